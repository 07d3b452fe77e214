// Original file: proto/ax.proto

import type { Long } from '@grpc/proto-loader';

export interface StatusReply {
  'node_name'?: (string);
  'version'?: (string);
  'pid'?: (number);
  'state_dir'?: (string);
  'hook_socket'?: (string);
  'host_ip'?: (string);
  'ports'?: (string);
  'vip_range'?: (string);
  'handoffs'?: (number | string | Long);
  'sessions'?: (number);
  'apps'?: (number);
  'services'?: (number);
  'uptime_seconds'?: (number | string);
  'handoff'?: (string);
  'direct_handoffs'?: (number | string | Long);
  'api_socket'?: (string);
  'log_file'?: (string);
  'autostarted_by'?: (number);
  'vip_ranges'?: (string)[];
  'daemon_uid'?: (number);
  'caller_uid'?: (number);
  'caller_user'?: (string);
  'api_group'?: (string);
  'label_policy'?: (string);
  'dns_address'?: (string);
  'dns_upstreams'?: (string)[];
  'dns_domains'?: (string)[];
  'dns_queries'?: (number | string | Long);
  'dns_forwarded'?: (number | string | Long);
  'dns_bad'?: (number | string | Long);
  'policy_default'?: (string);
  'policy_rules'?: (number);
  'policy_unknown_peers'?: (string);
}

export interface StatusReply__Output {
  'node_name': (string);
  'version': (string);
  'pid': (number);
  'state_dir': (string);
  'hook_socket': (string);
  'host_ip': (string);
  'ports': (string);
  'vip_range': (string);
  'handoffs': (number);
  'sessions': (number);
  'apps': (number);
  'services': (number);
  'uptime_seconds': (number);
  'handoff': (string);
  'direct_handoffs': (number);
  'api_socket': (string);
  'log_file': (string);
  'autostarted_by': (number);
  'vip_ranges': (string)[];
  'daemon_uid': (number);
  'caller_uid': (number);
  'caller_user': (string);
  'api_group': (string);
  'label_policy': (string);
  'dns_address': (string);
  'dns_upstreams': (string)[];
  'dns_domains': (string)[];
  'dns_queries': (number);
  'dns_forwarded': (number);
  'dns_bad': (number);
  'policy_default': (string);
  'policy_rules': (number);
  'policy_unknown_peers': (string);
}
