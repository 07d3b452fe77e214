// Original file: proto/ax.proto


export interface PolicyPutRequest {
  'rules_json'?: (string)[];
}

export interface PolicyPutRequest__Output {
  'rules_json': (string)[];
}
