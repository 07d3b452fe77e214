// Original file: proto/ax.proto

import type { App as _ax_v1_App, App__Output as _ax_v1_App__Output } from '../../ax/v1/App';

export interface AppList {
  'apps'?: (_ax_v1_App)[];
}

export interface AppList__Output {
  'apps': (_ax_v1_App__Output)[];
}
