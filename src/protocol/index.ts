/* eslint-disable @typescript-eslint/no-namespace -- one namespace per message, as the LSP does */
// The protocol between the extension host and the worker: JSON-RPC 2.0 over stdio, framed as in
// the Language Server Protocol (Content-Length headers), via vscode-jsonrpc. This file holds only
// types and method names, one namespace per message, so every layer can import it.
//
// Requests from the host:   initialize, shutdown, status, distill, chat, adapters/*
// Notifications to the host: job/event, chat/delta, log
// Cancellation: the standard $/cancelRequest of the request's id.

import type { DistillEvent as JobEvent, EvalSummary } from '../pipeline/events';

export type Direction = 'host→worker' | 'worker→host';

/** A request: method name, direction, and (as phantom types) params and result. */
export interface RequestDef<P, R> {
  readonly kind: 'request';
  readonly method: string;
  readonly direction: Direction;
  /** Type carriers only; never set. */
  readonly _params?: P;
  readonly _result?: R;
}

export interface NotificationDef<P> {
  readonly kind: 'notification';
  readonly method: string;
  readonly direction: Direction;
  readonly _params?: P;
}

const request = <P, R>(method: string, direction: Direction = 'host→worker'): RequestDef<P, R> => ({
  kind: 'request',
  method,
  direction,
});
const notification = <P>(method: string, direction: Direction = 'worker→host'): NotificationDef<P> => ({
  kind: 'notification',
  method,
  direction,
});

export const PROTOCOL_VERSION = 1;

export type Device = 'auto' | 'cpu' | 'webgpu' | 'cuda' | 'dml' | 'coreml';

// ── lifecycle ───────────────────────────────────────────────────────────────────────────────
export interface InitializeParams {
  protocolVersion: number;
  /** The workspace folder; runs and adapters go to <workspaceRoot>/.docdistill unless workDir says otherwise. */
  workspaceRoot: string;
  workDir?: string;
  modelDir?: string;
  device: Device;
  threads?: number;
}
export interface InitializeResult {
  protocolVersion: number;
  version: string;
  pid: number;
  provider?: string;
  model?: ModelInfo;
}
export namespace Initialize {
  export const type = request<InitializeParams, InitializeResult>('initialize');
}

export namespace Shutdown {
  /** Checkpoints the running job (if any) and stops; the worker exits right after answering. */
  export const type = request<void, { checkpointed: boolean }>('shutdown');
}

export interface ModelInfo {
  dir: string;
  architecture: string;
  parameters: number;
  dtype: string;
  provider: string;
  vocabSize: number;
  contextLength: number;
  hasChatTemplate: boolean;
}

export namespace SetModel {
  export const type = request<{ modelDir: string; device?: Device }, ModelInfo>('model/set');
}

export interface WorkerStatus {
  pid: number;
  provider?: string;
  model?: ModelInfo;
  memory: { rssMB: number; heapMB: number };
  job?: { id: string; kind: 'distill'; name: string; phase?: string; runId?: string };
  queuedChats: number;
  activeAdapter?: string;
}
export namespace Status {
  export const type = request<void, WorkerStatus>('status');
}

// ── distillation jobs ───────────────────────────────────────────────────────────────────────
export interface DistillParams {
  /** Client-chosen id that tags this job's notifications. */
  jobId: string;
  inputs: string[];
  name: string;
  settings?: Record<string, unknown>;
  runId?: string;
  skipEval?: boolean;
}
// A job's events are the pipeline's own, forwarded unchanged: defined once, where they are emitted
// (a module of types with no imports, so it is safe for every layer that imports the protocol).
export type { Phase, EvalScores, EvalSummary, DistillEvent as JobEvent } from '../pipeline/events';
export interface DistillResult {
  runId: string;
  adapterDir: string;
  summary?: EvalSummary;
}
export namespace Distill {
  /** One heavy job at a time: a second distill while one runs fails with JobBusy. */
  export const type = request<DistillParams, DistillResult>('distill');
}

export namespace JobEventNotification {
  export const type = notification<{ jobId: string; event: JobEvent }>('job/event');
}

// ── chat ────────────────────────────────────────────────────────────────────────────────────
export type ChatMode = 'base' | 'student' | 'teacher';
export interface ChatParams {
  /** Client-chosen id that tags chat/delta notifications. */
  streamId: string;
  messages: { role: 'system' | 'user' | 'assistant'; content: string }[];
  mode: ChatMode;
  /** student: the adapter to use (default: the active one). */
  adapter?: string;
  /** teacher: Markdown files whose text goes into the prompt (default: the adapter's sources). */
  docs?: string[];
  maxTokens?: number;
  temperature?: number;
  seed?: number;
}
export interface ChatResult {
  text: string;
  finishReason: 'stop' | 'length' | 'aborted';
  tokens: number;
  ms: number;
}
export namespace Chat {
  export const type = request<ChatParams, ChatResult>('chat');
}
export namespace ChatDelta {
  export const type = notification<{ streamId: string; text: string }>('chat/delta');
}

// ── adapters ────────────────────────────────────────────────────────────────────────────────
export interface AdapterSummary {
  name: string;
  dir: string;
  model: string;
  created: string;
  runId: string;
  sources: string[];
  chunks: number;
  /** Chunks whose text changed or disappeared since training. */
  stale: boolean;
  changed: number;
  removed: number;
  active: boolean;
  summary?: EvalSummary;
}
export namespace ListAdapters {
  export const type = request<void, AdapterSummary[]>('adapters/list');
}
export namespace ActivateAdapter {
  export const type = request<{ name: string | null }, void>('adapters/activate');
}
export namespace DeleteAdapter {
  export const type = request<{ name: string }, void>('adapters/delete');
}
export namespace ExportAdapter {
  /** Copies the adapter folder (PEFT layout) to dest: a new folder, an absolute path outside .docdistill/. */
  export const type = request<{ name: string; dest: string }, { dir: string }>('adapters/export');
}
export namespace MergeAdapter {
  /** Writes a full model folder with the adapter merged into the base weights (dest as for export). */
  export const type = request<{ name: string; dest: string }, { dir: string }>('adapters/merge');
}

export namespace Log {
  export const type = notification<{ level: 'debug' | 'info' | 'warn' | 'error'; message: string }>('log');
}

/** JSON-RPC error codes of DocDistill (server-defined range). */
export const ErrorCodes = {
  JobBusy: -32001,
  NoModel: -32002,
  Cancelled: -32800, // LSP's RequestCancelled
  BadInput: -32602, // InvalidParams
  Internal: -32603,
} as const;

/** Every message, for tests and documentation. */
export const ALL_MESSAGES = [
  Initialize.type,
  Shutdown.type,
  SetModel.type,
  Status.type,
  Distill.type,
  Chat.type,
  ListAdapters.type,
  ActivateAdapter.type,
  DeleteAdapter.type,
  ExportAdapter.type,
  MergeAdapter.type,
  JobEventNotification.type,
  ChatDelta.type,
  Log.type,
] as const;
