// Original file: proto/ax.proto

import type { PolicyRuleInfo as _ax_v1_PolicyRuleInfo, PolicyRuleInfo__Output as _ax_v1_PolicyRuleInfo__Output } from '../../ax/v1/PolicyRuleInfo';

export interface PolicyReply {
  'rules'?: (_ax_v1_PolicyRuleInfo)[];
  'missing'?: (string)[];
}

export interface PolicyReply__Output {
  'rules': (_ax_v1_PolicyRuleInfo__Output)[];
  'missing': (string)[];
}
