// Original file: proto/ax.proto


export interface SocketInfo {
  'id'?: (number);
  'app_id'?: (string);
  'pid'?: (number);
  'state'?: (string);
  'virtual_addr'?: (string);
  'host_addr'?: (string);
  'node'?: (string);
  'family'?: (string);
}

export interface SocketInfo__Output {
  'id': (number);
  'app_id': (string);
  'pid': (number);
  'state': (string);
  'virtual_addr': (string);
  'host_addr': (string);
  'node': (string);
  'family': (string);
}
