// Original file: proto/ax.proto


export interface AuditEndpoint {
  'app_id'?: (string);
  'name'?: (string);
  'labels'?: ({[key: string]: string});
  'addr'?: (string);
  'node'?: (string);
}

export interface AuditEndpoint__Output {
  'app_id': (string);
  'name': (string);
  'labels': ({[key: string]: string});
  'addr': (string);
  'node': (string);
}
