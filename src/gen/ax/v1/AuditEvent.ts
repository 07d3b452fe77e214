// Original file: proto/ax.proto

import type { AuditEndpoint as _ax_v1_AuditEndpoint, AuditEndpoint__Output as _ax_v1_AuditEndpoint__Output } from '../../ax/v1/AuditEndpoint';
import type { Long } from '@grpc/proto-loader';

export interface AuditEvent {
  'seq'?: (number | string | Long);
  'time_ms'?: (number | string | Long);
  'verdict'?: (string);
  'op'?: (string);
  'src'?: (_ax_v1_AuditEndpoint | null);
  'dst'?: (_ax_v1_AuditEndpoint | null);
  'rule'?: (string);
  'detail'?: (string);
}

export interface AuditEvent__Output {
  'seq': (number);
  'time_ms': (number);
  'verdict': (string);
  'op': (string);
  'src': (_ax_v1_AuditEndpoint__Output | null);
  'dst': (_ax_v1_AuditEndpoint__Output | null);
  'rule': (string);
  'detail': (string);
}
