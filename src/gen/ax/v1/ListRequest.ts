// Original file: proto/ax.proto


export interface ListRequest {
}

export interface ListRequest__Output {
}
