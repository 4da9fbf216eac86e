// Messages between the extension host and its webviews (dashboard, chat), typed on both sides.
import type { AdapterSummary, ChatMode, JobEvent, ModelInfo, EvalSummary } from './index';

export interface JobView {
  jobId: string;
  name: string;
  runId?: string;
  state: 'running' | 'done' | 'failed' | 'cancelled' | 'restarting';
  phase?: string;
  phaseProgress?: { done: number; total: number };
  started: number;
  finished?: number;
  error?: string;
  loss: { step: number; loss: number }[];
  validation: { step: number; loss: number }[];
  lr?: number;
  tokensPerSec?: number;
  etaSec?: number;
  /** The estimate made before the questions phase (seconds, per phase and in total). */
  estimate?: {
    totalSec: number;
    seconds: { questions: number; answers: number; train: number; evaluate: number };
    long: boolean;
    suggestions: string[];
  };
  totalSteps?: number;
  samples: { source: string; question: string; answer: string }[];
  eval?: {
    summary: EvalSummary;
    rows: { question: string; reference: string; base: string; teacher: string; student: string }[];
  };
  log: string[];
}

export interface DashboardState {
  model?: ModelInfo;
  jobs: JobView[];
  adapters: AdapterSummary[];
}

export type ToDashboard =
  | { type: 'state'; state: DashboardState }
  | { type: 'jobEvent'; jobId: string; event: JobEvent }
  /** Scroll a job's card into view and focus it (the Runs view's "Open in Dashboard"). */
  | { type: 'reveal'; jobId: string };
export type FromDashboard =
  | { type: 'ready' }
  | { type: 'command'; command: 'cancel' | 'distillDocs' | 'chat' | 'selectModel' | 'manageAdapters' };

export type ToChat =
  | { type: 'init'; adapters: string[]; active?: string; model?: string }
  | { type: 'delta'; id: string; text: string }
  | { type: 'done'; id: string; text: string; ms: number; tokens: number; finishReason: string }
  | { type: 'error'; id: string; message: string };

export type FromChat =
  | { type: 'ready' }
  | {
      type: 'ask';
      id: string;
      question: string;
      modes: ChatMode[];
      adapter?: string;
      history: { role: 'user' | 'assistant'; content: string }[];
    }
  | { type: 'stop' };
