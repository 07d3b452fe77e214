// Original file: proto/ax.proto


export interface PolicyRemoveRequest {
  'ids'?: (string)[];
}

export interface PolicyRemoveRequest__Output {
  'ids': (string)[];
}
