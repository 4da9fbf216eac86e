// The one job-event reducer: folds a job's events (as the pipeline emits them) into the JobView
// that the host keeps and the dashboard renders. Used by both, so they cannot drift apart.
import type { JobEvent } from './index';
import type { JobView } from './webview';

/** Applies one event to a job's view, in place. 'done' changes nothing: the host sets the state. */
export function applyJobEvent(job: JobView, e: JobEvent): void {
  switch (e.type) {
    case 'run':
      job.runId = e.runId;
      break;
    case 'phase':
      if (e.status === 'start') {
        job.phase = e.phase;
        job.phaseProgress = undefined;
      }
      break;
    case 'progress':
      job.phaseProgress = { done: e.done, total: e.total };
      job.etaSec = e.etaSec;
      break;
    case 'train':
      job.loss.push({ step: e.step, loss: e.loss });
      job.lr = e.lr;
      job.tokensPerSec = e.tokensPerSec;
      job.etaSec = e.etaSec;
      job.totalSteps = e.totalSteps;
      job.phaseProgress = { done: e.step, total: e.totalSteps };
      break;
    case 'validation':
      job.validation.push({ step: e.step, loss: e.loss });
      break;
    case 'sample':
      job.samples.push({ source: e.source, question: e.question, answer: e.answer });
      break;
    case 'eval':
      job.eval = { summary: e.summary, rows: e.rows };
      break;
    case 'estimate':
      job.estimate = { totalSec: e.totalSec, seconds: e.seconds, long: e.long, suggestions: e.suggestions };
      break;
    case 'log':
      job.log.push(e.message);
      break;
    case 'done':
      break;
  }
}
