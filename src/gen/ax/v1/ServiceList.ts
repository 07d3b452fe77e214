// Original file: proto/ax.proto

import type { Service as _ax_v1_Service, Service__Output as _ax_v1_Service__Output } from '../../ax/v1/Service';

export interface ServiceList {
  'services'?: (_ax_v1_Service)[];
}

export interface ServiceList__Output {
  'services': (_ax_v1_Service__Output)[];
}
