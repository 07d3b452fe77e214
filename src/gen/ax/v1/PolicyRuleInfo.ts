// Original file: proto/ax.proto

import type { Long } from '@grpc/proto-loader';

export interface PolicyRuleInfo {
  'id'?: (string);
  'rule_json'?: (string);
  'node'?: (string);
  'updated_ms'?: (number | string | Long);
  'description'?: (string);
}

export interface PolicyRuleInfo__Output {
  'id': (string);
  'rule_json': (string);
  'node': (string);
  'updated_ms': (number);
  'description': (string);
}
