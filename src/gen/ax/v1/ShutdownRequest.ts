// Original file: proto/ax.proto


export interface ShutdownRequest {
}

export interface ShutdownRequest__Output {
}
