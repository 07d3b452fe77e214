// Original file: proto/ax.proto

import type { AuditEvent as _ax_v1_AuditEvent, AuditEvent__Output as _ax_v1_AuditEvent__Output } from '../../ax/v1/AuditEvent';
import type { AuditStats as _ax_v1_AuditStats, AuditStats__Output as _ax_v1_AuditStats__Output } from '../../ax/v1/AuditStats';
import type { Long } from '@grpc/proto-loader';

export interface EventBatch {
  'events'?: (_ax_v1_AuditEvent)[];
  'stats'?: (_ax_v1_AuditStats | null);
  'skipped'?: (number | string | Long);
}

export interface EventBatch__Output {
  'events': (_ax_v1_AuditEvent__Output)[];
  'stats': (_ax_v1_AuditStats__Output | null);
  'skipped': (number);
}
