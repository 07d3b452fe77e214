// Original file: proto/ax.proto

import type { Long } from '@grpc/proto-loader';

export interface Member {
  'name'?: (string);
  'address'?: (string);
  'state'?: (string);
  'incarnation'?: (number | string | Long);
  'services'?: (number);
}

export interface Member__Output {
  'name': (string);
  'address': (string);
  'state': (string);
  'incarnation': (number);
  'services': (number);
}
