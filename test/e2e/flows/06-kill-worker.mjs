// Killing the worker process mid-run: the extension restarts it and the job (resumed from its
// run folder) finishes.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { explorerMenu } from './02-distill-from-explorer.mjs';

export const title = 'the worker is killed mid-run and the job still finishes';

function workerPids() {
  try {
    return execFileSync('pgrep', ['-f', 'dist/worker.js --stdio'], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export async function run(h) {
  const { statusBar, shot, waitFor, webview, ws } = h;
  // More questions and epochs, so that the job runs long enough to be killed in the middle.
  mkdirSync(join(ws, '.vscode'), { recursive: true });
  writeFileSync(
    join(ws, '.vscode', 'settings.json'),
    JSON.stringify({ 'docdistill.distill.rounds': 6, 'docdistill.distill.epochs': 12 }),
  );
  await h.page.waitForTimeout(1500);
  await (await explorerMenu(h, h.docs[1], 'Distill into Model')).click();
  const deadline = Date.now() + 60_000;
  while (!/DocDistill: (ingest|questions|answers|train|starting)/.test(await statusBar().innerText())) {
    if (Date.now() > deadline) throw new Error('the job did not start');
    await h.page.waitForTimeout(100);
  }
  const before = workerPids();
  if (!before.length) throw new Error('no worker process found');
  for (const pid of before) process.kill(pid, 'SIGKILL');
  h.log(`  killed worker ${before.join(', ')}`);
  await waitFor(async () => workerPids().some((p) => !before.includes(p)), 60_000, 'a new worker process');
  await shot('12-worker-restarted');
  await h.command('DocDistill: Open Dashboard');
  // Jobs are listed newest first.
  const latest = (await webview('DocDistill')).locator('.job').first();
  await waitFor(async () => (await latest.getAttribute('data-state')) === 'done', 300_000, 'the resumed job to finish');
  await shot('13-job-finished-after-kill');
}
