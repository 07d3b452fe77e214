// Original file: proto/ax.proto

import type { ExposeRule as _ax_v1_ExposeRule, ExposeRule__Output as _ax_v1_ExposeRule__Output } from '../../ax/v1/ExposeRule';

export interface App {
  'id'?: (string);
  'name'?: (string);
  'node'?: (string);
  'vip'?: (string);
  'labels'?: ({[key: string]: string});
  'run_pid'?: (number);
  'processes'?: (number);
  'services'?: (number);
  'expose'?: (_ax_v1_ExposeRule)[];
  'uid'?: (number);
  'user'?: (string);
}

export interface App__Output {
  'id': (string);
  'name': (string);
  'node': (string);
  'vip': (string);
  'labels': ({[key: string]: string});
  'run_pid': (number);
  'processes': (number);
  'services': (number);
  'expose': (_ax_v1_ExposeRule__Output)[];
  'uid': (number);
  'user': (string);
}
