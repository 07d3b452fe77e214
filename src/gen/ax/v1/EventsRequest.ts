// Original file: proto/ax.proto

import type { Long } from '@grpc/proto-loader';

export interface EventsRequest {
  'since_ms'?: (number | string | Long);
  'limit'?: (number);
  'follow'?: (boolean);
}

export interface EventsRequest__Output {
  'since_ms': (number);
  'limit': (number);
  'follow': (boolean);
}
