// Original file: proto/ax.proto

import type { SocketInfo as _ax_v1_SocketInfo, SocketInfo__Output as _ax_v1_SocketInfo__Output } from '../../ax/v1/SocketInfo';

export interface SocketList {
  'sockets'?: (_ax_v1_SocketInfo)[];
}

export interface SocketList__Output {
  'sockets': (_ax_v1_SocketInfo__Output)[];
}
