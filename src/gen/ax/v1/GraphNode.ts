// Original file: proto/ax.proto


export interface GraphNode {
  'id'?: (string);
  'labels'?: ({[key: string]: string});
  'external'?: (boolean);
}

export interface GraphNode__Output {
  'id': (string);
  'labels': ({[key: string]: string});
  'external': (boolean);
}
