// Original file: proto/ax.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AppList as _ax_v1_AppList, AppList__Output as _ax_v1_AppList__Output } from '../../ax/v1/AppList';
import type { EventBatch as _ax_v1_EventBatch, EventBatch__Output as _ax_v1_EventBatch__Output } from '../../ax/v1/EventBatch';
import type { EventsRequest as _ax_v1_EventsRequest, EventsRequest__Output as _ax_v1_EventsRequest__Output } from '../../ax/v1/EventsRequest';
import type { GraphReply as _ax_v1_GraphReply, GraphReply__Output as _ax_v1_GraphReply__Output } from '../../ax/v1/GraphReply';
import type { GraphRequest as _ax_v1_GraphRequest, GraphRequest__Output as _ax_v1_GraphRequest__Output } from '../../ax/v1/GraphRequest';
import type { ListRequest as _ax_v1_ListRequest, ListRequest__Output as _ax_v1_ListRequest__Output } from '../../ax/v1/ListRequest';
import type { MemberList as _ax_v1_MemberList, MemberList__Output as _ax_v1_MemberList__Output } from '../../ax/v1/MemberList';
import type { PolicyPutRequest as _ax_v1_PolicyPutRequest, PolicyPutRequest__Output as _ax_v1_PolicyPutRequest__Output } from '../../ax/v1/PolicyPutRequest';
import type { PolicyRemoveRequest as _ax_v1_PolicyRemoveRequest, PolicyRemoveRequest__Output as _ax_v1_PolicyRemoveRequest__Output } from '../../ax/v1/PolicyRemoveRequest';
import type { PolicyReply as _ax_v1_PolicyReply, PolicyReply__Output as _ax_v1_PolicyReply__Output } from '../../ax/v1/PolicyReply';
import type { RunEvent as _ax_v1_RunEvent, RunEvent__Output as _ax_v1_RunEvent__Output } from '../../ax/v1/RunEvent';
import type { RunRequest as _ax_v1_RunRequest, RunRequest__Output as _ax_v1_RunRequest__Output } from '../../ax/v1/RunRequest';
import type { ServiceList as _ax_v1_ServiceList, ServiceList__Output as _ax_v1_ServiceList__Output } from '../../ax/v1/ServiceList';
import type { ShutdownReply as _ax_v1_ShutdownReply, ShutdownReply__Output as _ax_v1_ShutdownReply__Output } from '../../ax/v1/ShutdownReply';
import type { ShutdownRequest as _ax_v1_ShutdownRequest, ShutdownRequest__Output as _ax_v1_ShutdownRequest__Output } from '../../ax/v1/ShutdownRequest';
import type { SocketList as _ax_v1_SocketList, SocketList__Output as _ax_v1_SocketList__Output } from '../../ax/v1/SocketList';
import type { StatusReply as _ax_v1_StatusReply, StatusReply__Output as _ax_v1_StatusReply__Output } from '../../ax/v1/StatusReply';
import type { StatusRequest as _ax_v1_StatusRequest, StatusRequest__Output as _ax_v1_StatusRequest__Output } from '../../ax/v1/StatusRequest';

export interface AxClient extends grpc.Client {
  Events(argument: _ax_v1_EventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_ax_v1_EventBatch__Output>;
  Events(argument: _ax_v1_EventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_ax_v1_EventBatch__Output>;
  events(argument: _ax_v1_EventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_ax_v1_EventBatch__Output>;
  events(argument: _ax_v1_EventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_ax_v1_EventBatch__Output>;
  
  Graph(argument: _ax_v1_GraphRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_GraphReply__Output>): grpc.ClientUnaryCall;
  Graph(argument: _ax_v1_GraphRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_GraphReply__Output>): grpc.ClientUnaryCall;
  Graph(argument: _ax_v1_GraphRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_GraphReply__Output>): grpc.ClientUnaryCall;
  Graph(argument: _ax_v1_GraphRequest, callback: grpc.requestCallback<_ax_v1_GraphReply__Output>): grpc.ClientUnaryCall;
  graph(argument: _ax_v1_GraphRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_GraphReply__Output>): grpc.ClientUnaryCall;
  graph(argument: _ax_v1_GraphRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_GraphReply__Output>): grpc.ClientUnaryCall;
  graph(argument: _ax_v1_GraphRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_GraphReply__Output>): grpc.ClientUnaryCall;
  graph(argument: _ax_v1_GraphRequest, callback: grpc.requestCallback<_ax_v1_GraphReply__Output>): grpc.ClientUnaryCall;
  
  ListApps(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_AppList__Output>): grpc.ClientUnaryCall;
  ListApps(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_AppList__Output>): grpc.ClientUnaryCall;
  ListApps(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_AppList__Output>): grpc.ClientUnaryCall;
  ListApps(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_AppList__Output>): grpc.ClientUnaryCall;
  listApps(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_AppList__Output>): grpc.ClientUnaryCall;
  listApps(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_AppList__Output>): grpc.ClientUnaryCall;
  listApps(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_AppList__Output>): grpc.ClientUnaryCall;
  listApps(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_AppList__Output>): grpc.ClientUnaryCall;
  
  ListMembers(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_MemberList__Output>): grpc.ClientUnaryCall;
  ListMembers(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_MemberList__Output>): grpc.ClientUnaryCall;
  ListMembers(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_MemberList__Output>): grpc.ClientUnaryCall;
  ListMembers(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_MemberList__Output>): grpc.ClientUnaryCall;
  listMembers(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_MemberList__Output>): grpc.ClientUnaryCall;
  listMembers(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_MemberList__Output>): grpc.ClientUnaryCall;
  listMembers(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_MemberList__Output>): grpc.ClientUnaryCall;
  listMembers(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_MemberList__Output>): grpc.ClientUnaryCall;
  
  ListServices(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_ServiceList__Output>): grpc.ClientUnaryCall;
  ListServices(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_ServiceList__Output>): grpc.ClientUnaryCall;
  ListServices(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_ServiceList__Output>): grpc.ClientUnaryCall;
  ListServices(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_ServiceList__Output>): grpc.ClientUnaryCall;
  listServices(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_ServiceList__Output>): grpc.ClientUnaryCall;
  listServices(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_ServiceList__Output>): grpc.ClientUnaryCall;
  listServices(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_ServiceList__Output>): grpc.ClientUnaryCall;
  listServices(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_ServiceList__Output>): grpc.ClientUnaryCall;
  
  ListSockets(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_SocketList__Output>): grpc.ClientUnaryCall;
  ListSockets(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_SocketList__Output>): grpc.ClientUnaryCall;
  ListSockets(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_SocketList__Output>): grpc.ClientUnaryCall;
  ListSockets(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_SocketList__Output>): grpc.ClientUnaryCall;
  listSockets(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_SocketList__Output>): grpc.ClientUnaryCall;
  listSockets(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_SocketList__Output>): grpc.ClientUnaryCall;
  listSockets(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_SocketList__Output>): grpc.ClientUnaryCall;
  listSockets(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_SocketList__Output>): grpc.ClientUnaryCall;
  
  PolicyList(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  PolicyList(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  PolicyList(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  PolicyList(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyList(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyList(argument: _ax_v1_ListRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyList(argument: _ax_v1_ListRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyList(argument: _ax_v1_ListRequest, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  
  PolicyPut(argument: _ax_v1_PolicyPutRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  PolicyPut(argument: _ax_v1_PolicyPutRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  PolicyPut(argument: _ax_v1_PolicyPutRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  PolicyPut(argument: _ax_v1_PolicyPutRequest, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyPut(argument: _ax_v1_PolicyPutRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyPut(argument: _ax_v1_PolicyPutRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyPut(argument: _ax_v1_PolicyPutRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyPut(argument: _ax_v1_PolicyPutRequest, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  
  PolicyRemove(argument: _ax_v1_PolicyRemoveRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  PolicyRemove(argument: _ax_v1_PolicyRemoveRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  PolicyRemove(argument: _ax_v1_PolicyRemoveRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  PolicyRemove(argument: _ax_v1_PolicyRemoveRequest, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyRemove(argument: _ax_v1_PolicyRemoveRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyRemove(argument: _ax_v1_PolicyRemoveRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyRemove(argument: _ax_v1_PolicyRemoveRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  policyRemove(argument: _ax_v1_PolicyRemoveRequest, callback: grpc.requestCallback<_ax_v1_PolicyReply__Output>): grpc.ClientUnaryCall;
  
  RunApp(argument: _ax_v1_RunRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_ax_v1_RunEvent__Output>;
  RunApp(argument: _ax_v1_RunRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_ax_v1_RunEvent__Output>;
  runApp(argument: _ax_v1_RunRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_ax_v1_RunEvent__Output>;
  runApp(argument: _ax_v1_RunRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_ax_v1_RunEvent__Output>;
  
  Shutdown(argument: _ax_v1_ShutdownRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_ShutdownReply__Output>): grpc.ClientUnaryCall;
  Shutdown(argument: _ax_v1_ShutdownRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_ShutdownReply__Output>): grpc.ClientUnaryCall;
  Shutdown(argument: _ax_v1_ShutdownRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_ShutdownReply__Output>): grpc.ClientUnaryCall;
  Shutdown(argument: _ax_v1_ShutdownRequest, callback: grpc.requestCallback<_ax_v1_ShutdownReply__Output>): grpc.ClientUnaryCall;
  shutdown(argument: _ax_v1_ShutdownRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_ShutdownReply__Output>): grpc.ClientUnaryCall;
  shutdown(argument: _ax_v1_ShutdownRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_ShutdownReply__Output>): grpc.ClientUnaryCall;
  shutdown(argument: _ax_v1_ShutdownRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_ShutdownReply__Output>): grpc.ClientUnaryCall;
  shutdown(argument: _ax_v1_ShutdownRequest, callback: grpc.requestCallback<_ax_v1_ShutdownReply__Output>): grpc.ClientUnaryCall;
  
  Status(argument: _ax_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  Status(argument: _ax_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  Status(argument: _ax_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  Status(argument: _ax_v1_StatusRequest, callback: grpc.requestCallback<_ax_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  status(argument: _ax_v1_StatusRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  status(argument: _ax_v1_StatusRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_ax_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  status(argument: _ax_v1_StatusRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_ax_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  status(argument: _ax_v1_StatusRequest, callback: grpc.requestCallback<_ax_v1_StatusReply__Output>): grpc.ClientUnaryCall;
  
}

export interface AxHandlers extends grpc.UntypedServiceImplementation {
  Events: grpc.handleServerStreamingCall<_ax_v1_EventsRequest__Output, _ax_v1_EventBatch>;
  
  Graph: grpc.handleUnaryCall<_ax_v1_GraphRequest__Output, _ax_v1_GraphReply>;
  
  ListApps: grpc.handleUnaryCall<_ax_v1_ListRequest__Output, _ax_v1_AppList>;
  
  ListMembers: grpc.handleUnaryCall<_ax_v1_ListRequest__Output, _ax_v1_MemberList>;
  
  ListServices: grpc.handleUnaryCall<_ax_v1_ListRequest__Output, _ax_v1_ServiceList>;
  
  ListSockets: grpc.handleUnaryCall<_ax_v1_ListRequest__Output, _ax_v1_SocketList>;
  
  PolicyList: grpc.handleUnaryCall<_ax_v1_ListRequest__Output, _ax_v1_PolicyReply>;
  
  PolicyPut: grpc.handleUnaryCall<_ax_v1_PolicyPutRequest__Output, _ax_v1_PolicyReply>;
  
  PolicyRemove: grpc.handleUnaryCall<_ax_v1_PolicyRemoveRequest__Output, _ax_v1_PolicyReply>;
  
  RunApp: grpc.handleServerStreamingCall<_ax_v1_RunRequest__Output, _ax_v1_RunEvent>;
  
  Shutdown: grpc.handleUnaryCall<_ax_v1_ShutdownRequest__Output, _ax_v1_ShutdownReply>;
  
  Status: grpc.handleUnaryCall<_ax_v1_StatusRequest__Output, _ax_v1_StatusReply>;
  
}

export interface AxDefinition extends grpc.ServiceDefinition {
  Events: MethodDefinition<_ax_v1_EventsRequest, _ax_v1_EventBatch, _ax_v1_EventsRequest__Output, _ax_v1_EventBatch__Output>
  Graph: MethodDefinition<_ax_v1_GraphRequest, _ax_v1_GraphReply, _ax_v1_GraphRequest__Output, _ax_v1_GraphReply__Output>
  ListApps: MethodDefinition<_ax_v1_ListRequest, _ax_v1_AppList, _ax_v1_ListRequest__Output, _ax_v1_AppList__Output>
  ListMembers: MethodDefinition<_ax_v1_ListRequest, _ax_v1_MemberList, _ax_v1_ListRequest__Output, _ax_v1_MemberList__Output>
  ListServices: MethodDefinition<_ax_v1_ListRequest, _ax_v1_ServiceList, _ax_v1_ListRequest__Output, _ax_v1_ServiceList__Output>
  ListSockets: MethodDefinition<_ax_v1_ListRequest, _ax_v1_SocketList, _ax_v1_ListRequest__Output, _ax_v1_SocketList__Output>
  PolicyList: MethodDefinition<_ax_v1_ListRequest, _ax_v1_PolicyReply, _ax_v1_ListRequest__Output, _ax_v1_PolicyReply__Output>
  PolicyPut: MethodDefinition<_ax_v1_PolicyPutRequest, _ax_v1_PolicyReply, _ax_v1_PolicyPutRequest__Output, _ax_v1_PolicyReply__Output>
  PolicyRemove: MethodDefinition<_ax_v1_PolicyRemoveRequest, _ax_v1_PolicyReply, _ax_v1_PolicyRemoveRequest__Output, _ax_v1_PolicyReply__Output>
  RunApp: MethodDefinition<_ax_v1_RunRequest, _ax_v1_RunEvent, _ax_v1_RunRequest__Output, _ax_v1_RunEvent__Output>
  Shutdown: MethodDefinition<_ax_v1_ShutdownRequest, _ax_v1_ShutdownReply, _ax_v1_ShutdownRequest__Output, _ax_v1_ShutdownReply__Output>
  Status: MethodDefinition<_ax_v1_StatusRequest, _ax_v1_StatusReply, _ax_v1_StatusRequest__Output, _ax_v1_StatusReply__Output>
}
