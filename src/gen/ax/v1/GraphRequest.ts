// Original file: proto/ax.proto

import type { Long } from '@grpc/proto-loader';

export interface GraphRequest {
  'since_ms'?: (number | string | Long);
}

export interface GraphRequest__Output {
  'since_ms': (number);
}
