// What a distillation reports as it goes, defined once, here, where it is emitted. The CLI prints
// these events; the worker forwards them unchanged as the protocol's job/event notifications (the
// protocol re-exports this type-only module under its wire names, JobEvent and friends).

export type Phase = 'ingest' | 'questions' | 'answers' | 'train' | 'evaluate';
export const PHASES: readonly Phase[] = ['ingest', 'questions', 'answers', 'train', 'evaluate'];

export interface EvalRow {
  question: string;
  source: string;
  reference: string;
  base: string;
  teacher: string;
  student: string;
}

export interface EvalScores {
  exact: number;
  contains: number;
  f1: number;
}
export interface EvalSummary {
  n: number;
  base: EvalScores;
  teacher: EvalScores;
  student: EvalScores;
}

export type DistillEvent =
  | { type: 'run'; runId: string; dir: string; resumed: boolean }
  | { type: 'phase'; phase: Phase; status: 'start' | 'done' | 'skipped'; detail?: string }
  | { type: 'progress'; phase: Phase; done: number; total: number; etaSec?: number }
  | { type: 'sample'; source: string; question: string; answer: string }
  | {
      type: 'train';
      step: number;
      totalSteps: number;
      epoch: number;
      loss: number;
      lr: number;
      tokensPerSec: number;
      etaSec: number;
    }
  | { type: 'validation'; epoch: number; step: number; loss: number }
  | { type: 'eval'; summary: EvalSummary; rows: EvalRow[] }
  | {
      /** Before the questions phase: how long the run's phases should take (see estimate.ts). */
      type: 'estimate';
      totalSec: number;
      seconds: { questions: number; answers: number; train: number; evaluate: number };
      /** Over the threshold (an hour): the CLI and the dashboard warn, with the suggestions. */
      long: boolean;
      suggestions: string[];
      /** How long the measuring probe took. */
      probeSec: number;
      /** Sent again after the questions phase, counted with the questions the model wrote. */
      refined?: boolean;
    }
  | { type: 'log'; level: 'info' | 'warn'; message: string }
  | { type: 'done'; adapterDir: string; summary?: EvalSummary };
