import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { App as _ax_v1_App, App__Output as _ax_v1_App__Output } from './ax/v1/App';
import type { AppList as _ax_v1_AppList, AppList__Output as _ax_v1_AppList__Output } from './ax/v1/AppList';
import type { AuditEndpoint as _ax_v1_AuditEndpoint, AuditEndpoint__Output as _ax_v1_AuditEndpoint__Output } from './ax/v1/AuditEndpoint';
import type { AuditEvent as _ax_v1_AuditEvent, AuditEvent__Output as _ax_v1_AuditEvent__Output } from './ax/v1/AuditEvent';
import type { AuditStats as _ax_v1_AuditStats, AuditStats__Output as _ax_v1_AuditStats__Output } from './ax/v1/AuditStats';
import type { AxClient as _ax_v1_AxClient, AxDefinition as _ax_v1_AxDefinition } from './ax/v1/Ax';
import type { EventBatch as _ax_v1_EventBatch, EventBatch__Output as _ax_v1_EventBatch__Output } from './ax/v1/EventBatch';
import type { EventsRequest as _ax_v1_EventsRequest, EventsRequest__Output as _ax_v1_EventsRequest__Output } from './ax/v1/EventsRequest';
import type { ExposeRule as _ax_v1_ExposeRule, ExposeRule__Output as _ax_v1_ExposeRule__Output } from './ax/v1/ExposeRule';
import type { GraphEdge as _ax_v1_GraphEdge, GraphEdge__Output as _ax_v1_GraphEdge__Output } from './ax/v1/GraphEdge';
import type { GraphNode as _ax_v1_GraphNode, GraphNode__Output as _ax_v1_GraphNode__Output } from './ax/v1/GraphNode';
import type { GraphReply as _ax_v1_GraphReply, GraphReply__Output as _ax_v1_GraphReply__Output } from './ax/v1/GraphReply';
import type { GraphRequest as _ax_v1_GraphRequest, GraphRequest__Output as _ax_v1_GraphRequest__Output } from './ax/v1/GraphRequest';
import type { ListRequest as _ax_v1_ListRequest, ListRequest__Output as _ax_v1_ListRequest__Output } from './ax/v1/ListRequest';
import type { Member as _ax_v1_Member, Member__Output as _ax_v1_Member__Output } from './ax/v1/Member';
import type { MemberList as _ax_v1_MemberList, MemberList__Output as _ax_v1_MemberList__Output } from './ax/v1/MemberList';
import type { PolicyPutRequest as _ax_v1_PolicyPutRequest, PolicyPutRequest__Output as _ax_v1_PolicyPutRequest__Output } from './ax/v1/PolicyPutRequest';
import type { PolicyRemoveRequest as _ax_v1_PolicyRemoveRequest, PolicyRemoveRequest__Output as _ax_v1_PolicyRemoveRequest__Output } from './ax/v1/PolicyRemoveRequest';
import type { PolicyReply as _ax_v1_PolicyReply, PolicyReply__Output as _ax_v1_PolicyReply__Output } from './ax/v1/PolicyReply';
import type { PolicyRuleInfo as _ax_v1_PolicyRuleInfo, PolicyRuleInfo__Output as _ax_v1_PolicyRuleInfo__Output } from './ax/v1/PolicyRuleInfo';
import type { RunEvent as _ax_v1_RunEvent, RunEvent__Output as _ax_v1_RunEvent__Output } from './ax/v1/RunEvent';
import type { RunRequest as _ax_v1_RunRequest, RunRequest__Output as _ax_v1_RunRequest__Output } from './ax/v1/RunRequest';
import type { Service as _ax_v1_Service, Service__Output as _ax_v1_Service__Output } from './ax/v1/Service';
import type { ServiceList as _ax_v1_ServiceList, ServiceList__Output as _ax_v1_ServiceList__Output } from './ax/v1/ServiceList';
import type { ShutdownReply as _ax_v1_ShutdownReply, ShutdownReply__Output as _ax_v1_ShutdownReply__Output } from './ax/v1/ShutdownReply';
import type { ShutdownRequest as _ax_v1_ShutdownRequest, ShutdownRequest__Output as _ax_v1_ShutdownRequest__Output } from './ax/v1/ShutdownRequest';
import type { SocketInfo as _ax_v1_SocketInfo, SocketInfo__Output as _ax_v1_SocketInfo__Output } from './ax/v1/SocketInfo';
import type { SocketList as _ax_v1_SocketList, SocketList__Output as _ax_v1_SocketList__Output } from './ax/v1/SocketList';
import type { StatusReply as _ax_v1_StatusReply, StatusReply__Output as _ax_v1_StatusReply__Output } from './ax/v1/StatusReply';
import type { StatusRequest as _ax_v1_StatusRequest, StatusRequest__Output as _ax_v1_StatusRequest__Output } from './ax/v1/StatusRequest';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  ax: {
    v1: {
      App: MessageTypeDefinition<_ax_v1_App, _ax_v1_App__Output>
      AppList: MessageTypeDefinition<_ax_v1_AppList, _ax_v1_AppList__Output>
      AuditEndpoint: MessageTypeDefinition<_ax_v1_AuditEndpoint, _ax_v1_AuditEndpoint__Output>
      AuditEvent: MessageTypeDefinition<_ax_v1_AuditEvent, _ax_v1_AuditEvent__Output>
      AuditStats: MessageTypeDefinition<_ax_v1_AuditStats, _ax_v1_AuditStats__Output>
      Ax: SubtypeConstructor<typeof grpc.Client, _ax_v1_AxClient> & { service: _ax_v1_AxDefinition }
      EventBatch: MessageTypeDefinition<_ax_v1_EventBatch, _ax_v1_EventBatch__Output>
      EventsRequest: MessageTypeDefinition<_ax_v1_EventsRequest, _ax_v1_EventsRequest__Output>
      ExposeRule: MessageTypeDefinition<_ax_v1_ExposeRule, _ax_v1_ExposeRule__Output>
      GraphEdge: MessageTypeDefinition<_ax_v1_GraphEdge, _ax_v1_GraphEdge__Output>
      GraphNode: MessageTypeDefinition<_ax_v1_GraphNode, _ax_v1_GraphNode__Output>
      GraphReply: MessageTypeDefinition<_ax_v1_GraphReply, _ax_v1_GraphReply__Output>
      GraphRequest: MessageTypeDefinition<_ax_v1_GraphRequest, _ax_v1_GraphRequest__Output>
      ListRequest: MessageTypeDefinition<_ax_v1_ListRequest, _ax_v1_ListRequest__Output>
      Member: MessageTypeDefinition<_ax_v1_Member, _ax_v1_Member__Output>
      MemberList: MessageTypeDefinition<_ax_v1_MemberList, _ax_v1_MemberList__Output>
      PolicyPutRequest: MessageTypeDefinition<_ax_v1_PolicyPutRequest, _ax_v1_PolicyPutRequest__Output>
      PolicyRemoveRequest: MessageTypeDefinition<_ax_v1_PolicyRemoveRequest, _ax_v1_PolicyRemoveRequest__Output>
      PolicyReply: MessageTypeDefinition<_ax_v1_PolicyReply, _ax_v1_PolicyReply__Output>
      PolicyRuleInfo: MessageTypeDefinition<_ax_v1_PolicyRuleInfo, _ax_v1_PolicyRuleInfo__Output>
      RunEvent: MessageTypeDefinition<_ax_v1_RunEvent, _ax_v1_RunEvent__Output>
      RunRequest: MessageTypeDefinition<_ax_v1_RunRequest, _ax_v1_RunRequest__Output>
      Service: MessageTypeDefinition<_ax_v1_Service, _ax_v1_Service__Output>
      ServiceList: MessageTypeDefinition<_ax_v1_ServiceList, _ax_v1_ServiceList__Output>
      ShutdownReply: MessageTypeDefinition<_ax_v1_ShutdownReply, _ax_v1_ShutdownReply__Output>
      ShutdownRequest: MessageTypeDefinition<_ax_v1_ShutdownRequest, _ax_v1_ShutdownRequest__Output>
      SocketInfo: MessageTypeDefinition<_ax_v1_SocketInfo, _ax_v1_SocketInfo__Output>
      SocketList: MessageTypeDefinition<_ax_v1_SocketList, _ax_v1_SocketList__Output>
      StatusReply: MessageTypeDefinition<_ax_v1_StatusReply, _ax_v1_StatusReply__Output>
      StatusRequest: MessageTypeDefinition<_ax_v1_StatusRequest, _ax_v1_StatusRequest__Output>
    }
  }
}

