// Killing the worker process mid-run: the extension restarts it and the job (resumed from its
// run folder) finishes.
import { execFileSync } from 'node:child_process';
import { explorerMenu } from './02-distill-from-explorer.mjs';

export const title = 'the worker is killed mid-run and the job still finishes';

function workerPids() {
  try {
    return execFileSync('pgrep', ['-f', 'dist/worker.js --stdio'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export async function run(h) {
  const { statusBar, shot, waitFor, webview } = h;
  await (await explorerMenu(h, 'dapu.md', 'Distill into Model')).click();
  await waitFor(async () => /DocDistill: (questions|answers|train)/.test(await statusBar().innerText()), 60_000, 'the job to run');
  const before = workerPids();
  if (!before.length) throw new Error('no worker process found');
  for (const pid of before) process.kill(pid, 'SIGKILL');
  h.log(`  killed worker ${before.join(', ')}`);
  await waitFor(async () => workerPids().some((p) => !before.includes(p)), 60_000, 'a new worker process');
  await shot('12-worker-restarted');
  await h.command('DocDistill: Open Dashboard');
  // Jobs are listed newest first.
  const latest = webview('DocDistill').locator('.job').first();
  await waitFor(async () => (await latest.getAttribute('data-state')) === 'done', 300_000, 'the resumed job to finish');
  await shot('13-job-finished-after-kill');
}
