// Original file: proto/ax.proto


export interface RunEvent {
  'app_id'?: (string);
  'token'?: (string);
  'vip'?: (string);
  'hook_socket'?: (string);
  'name'?: (string);
}

export interface RunEvent__Output {
  'app_id': (string);
  'token': (string);
  'vip': (string);
  'hook_socket': (string);
  'name': (string);
}
