// Original file: proto/ax.proto

import type { Long } from '@grpc/proto-loader';

export interface AuditStats {
  'recorded'?: (number | string | Long);
  'stored'?: (number | string | Long);
  'capacity'?: (number);
  'dropped_wrapped'?: (number | string | Long);
  'dropped_backlog'?: (number | string | Long);
  'dropped_write_error'?: (number | string | Long);
  'edges_dropped'?: (number | string | Long);
}

export interface AuditStats__Output {
  'recorded': (number);
  'stored': (number);
  'capacity': (number);
  'dropped_wrapped': (number);
  'dropped_backlog': (number);
  'dropped_write_error': (number);
  'edges_dropped': (number);
}
