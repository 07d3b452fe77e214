// Original file: proto/ax.proto

import type { GraphNode as _ax_v1_GraphNode, GraphNode__Output as _ax_v1_GraphNode__Output } from '../../ax/v1/GraphNode';
import type { GraphEdge as _ax_v1_GraphEdge, GraphEdge__Output as _ax_v1_GraphEdge__Output } from '../../ax/v1/GraphEdge';
import type { AuditStats as _ax_v1_AuditStats, AuditStats__Output as _ax_v1_AuditStats__Output } from '../../ax/v1/AuditStats';

export interface GraphReply {
  'nodes'?: (_ax_v1_GraphNode)[];
  'edges'?: (_ax_v1_GraphEdge)[];
  'stats'?: (_ax_v1_AuditStats | null);
}

export interface GraphReply__Output {
  'nodes': (_ax_v1_GraphNode__Output)[];
  'edges': (_ax_v1_GraphEdge__Output)[];
  'stats': (_ax_v1_AuditStats__Output | null);
}
