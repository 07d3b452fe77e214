// Original file: proto/ax.proto

import type { Member as _ax_v1_Member, Member__Output as _ax_v1_Member__Output } from '../../ax/v1/Member';

export interface MemberList {
  'members'?: (_ax_v1_Member)[];
}

export interface MemberList__Output {
  'members': (_ax_v1_Member__Output)[];
}
