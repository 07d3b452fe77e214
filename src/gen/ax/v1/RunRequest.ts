// Original file: proto/ax.proto

import type { ExposeRule as _ax_v1_ExposeRule, ExposeRule__Output as _ax_v1_ExposeRule__Output } from '../../ax/v1/ExposeRule';

export interface RunRequest {
  'name'?: (string);
  'ip'?: (string);
  'labels'?: ({[key: string]: string});
  'expose'?: (_ax_v1_ExposeRule)[];
  'run_pid'?: (number);
  'command'?: (string);
  'app_id'?: (string);
  'token'?: (string);
}

export interface RunRequest__Output {
  'name': (string);
  'ip': (string);
  'labels': ({[key: string]: string});
  'expose': (_ax_v1_ExposeRule__Output)[];
  'run_pid': (number);
  'command': (string);
  'app_id': (string);
  'token': (string);
}
