// Original file: proto/ax.proto


export interface ShutdownReply {
}

export interface ShutdownReply__Output {
}
