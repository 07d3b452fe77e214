// Original file: proto/ax.proto

import type { Long } from '@grpc/proto-loader';

export interface GraphEdge {
  'src'?: (string);
  'dst'?: (string);
  'verdict'?: (string);
  'op'?: (string);
  'count'?: (number | string | Long);
  'last_ms'?: (number | string | Long);
}

export interface GraphEdge__Output {
  'src': (string);
  'dst': (string);
  'verdict': (string);
  'op': (string);
  'count': (number);
  'last_ms': (number);
}
