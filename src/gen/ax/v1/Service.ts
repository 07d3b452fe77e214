// Original file: proto/ax.proto


export interface Service {
  'name'?: (string);
  'vip'?: (string);
  'vport'?: (number);
  'host_ip'?: (string);
  'host_port'?: (number);
  'proto'?: (string);
  'app_id'?: (string);
  'node'?: (string);
  'labels'?: ({[key: string]: string});
  'pid'?: (number);
  'family'?: (string);
}

export interface Service__Output {
  'name': (string);
  'vip': (string);
  'vport': (number);
  'host_ip': (string);
  'host_port': (number);
  'proto': (string);
  'app_id': (string);
  'node': (string);
  'labels': ({[key: string]: string});
  'pid': (number);
  'family': (string);
}
