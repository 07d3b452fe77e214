// Original file: proto/ax.proto


export interface StatusRequest {
}

export interface StatusRequest__Output {
}
