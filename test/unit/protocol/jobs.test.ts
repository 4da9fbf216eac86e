// The one job-event reducer (host and dashboard both fold events with it): a job's events, in
// the order the pipeline sends them, give the view the dashboard draws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { JobEvent } from '../../../src/protocol';
import type { JobView } from '../../../src/protocol/webview';
import { applyJobEvent } from '../../../src/protocol/jobs';

const summary = {
  n: 2,
  base: { exact: 0, contains: 0, f1: 0.1 },
  teacher: { exact: 1, contains: 1, f1: 0.9 },
  student: { exact: 0.5, contains: 0.5, f1: 0.6 },
};

test("a job's events fold into its view", () => {
  const job: JobView = {
    jobId: 'j',
    name: 'docs',
    state: 'running',
    started: 0,
    loss: [],
    validation: [],
    samples: [],
    log: [],
  };
  const events: JobEvent[] = [
    { type: 'run', runId: 'r1', dir: '/x', resumed: false },
    { type: 'phase', phase: 'questions', status: 'start' },
    { type: 'progress', phase: 'questions', done: 3, total: 10, etaSec: 12 },
    { type: 'sample', source: 'docs/a.md', question: 'Q?', answer: 'A.' },
    { type: 'phase', phase: 'train', status: 'start' },
  ];
  for (const e of events) applyJobEvent(job, e);
  assert.equal(job.runId, 'r1');
  assert.equal(job.phase, 'train');
  assert.equal(job.phaseProgress, undefined, "a new phase starts without the last one's progress");
  assert.equal(job.etaSec, 12);
  assert.deepEqual(job.samples, [{ source: 'docs/a.md', question: 'Q?', answer: 'A.' }]);
  applyJobEvent(job, {
    type: 'train',
    step: 1,
    totalSteps: 4,
    epoch: 0,
    loss: 2.5,
    lr: 1e-3,
    tokensPerSec: 100,
    etaSec: 3,
  });
  applyJobEvent(job, {
    type: 'train',
    step: 2,
    totalSteps: 4,
    epoch: 0,
    loss: 2.0,
    lr: 9e-4,
    tokensPerSec: 110,
    etaSec: 2,
  });
  applyJobEvent(job, { type: 'validation', epoch: 0, step: 2, loss: 2.2 });
  assert.deepEqual(job.loss, [
    { step: 1, loss: 2.5 },
    { step: 2, loss: 2.0 },
  ]);
  assert.deepEqual(job.validation, [{ step: 2, loss: 2.2 }]);
  assert.deepEqual([job.lr, job.tokensPerSec, job.etaSec, job.totalSteps], [9e-4, 110, 2, 4]);
  assert.deepEqual(job.phaseProgress, { done: 2, total: 4 });
  applyJobEvent(job, { type: 'phase', phase: 'train', status: 'done' });
  assert.equal(job.phase, 'train', '"done" of a phase does not move the job');
  applyJobEvent(job, { type: 'log', level: 'warn', message: 'careful' });
  applyJobEvent(job, {
    type: 'eval',
    summary,
    rows: [{ question: 'Q?', source: 'docs/a.md', reference: 'A.', base: 'b', teacher: 't', student: 's' }],
  });
  applyJobEvent(job, { type: 'done', adapterDir: '/a', summary });
  assert.deepEqual(job.log, ['careful']);
  assert.equal(job.eval?.summary, summary);
  assert.equal(job.eval?.rows.length, 1);
  assert.equal(job.state, 'running', "the host, not the reducer, decides the job's state");
});

test('host and dashboard use this reducer, not copies of it', () => {
  const repo = resolve(__dirname, '..', '..', '..');
  for (const f of ['src/host/jobs.ts', 'webview/dashboard/main.ts']) {
    const src = readFileSync(resolve(repo, f), 'utf8');
    assert.match(src, /import \{ applyJobEvent \} from '[./]*\/?(?:src\/)?protocol\/jobs'/, f);
    assert.doesNotMatch(src, /loss\.push\(/, `${f} folds train events itself`);
  }
});
