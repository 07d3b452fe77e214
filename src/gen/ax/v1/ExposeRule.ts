// Original file: proto/ax.proto


export interface ExposeRule {
  'port'?: (number);
  'host_ip'?: (string);
  'host_port'?: (number);
}

export interface ExposeRule__Output {
  'port': (number);
  'host_ip': (string);
  'host_port': (number);
}
