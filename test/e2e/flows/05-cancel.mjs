// Cancel from the status bar (it opens the dashboard, which has the Cancel button) stops a job
// and leaves a resumable run.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { explorerMenu } from './02-distill-from-explorer.mjs';

export const title = 'cancel from the status bar';

export async function run(h) {
  const { ws, statusBar, shot, waitFor, webview, page } = h;
  await (await explorerMenu(h, h.docs[1], 'Distill into Model')).click();
  await waitFor(
    async () => /DocDistill: (questions|answers|train)/.test(await statusBar().innerText()),
    60_000,
    'the job to run',
  );
  await statusBar().locator('.statusbar-item', { hasText: 'DocDistill:' }).first().click();
  const dash = await webview('DocDistill');
  await dash.locator('.job[data-state="running"] vscode-button', { hasText: 'Cancel' }).first().click();
  await dash.locator('.job[data-state="cancelled"]').first().waitFor({ timeout: 60_000 });
  await shot('11-cancelled');
  const runs = join(ws, '.docdistill', 'runs');
  const open = readdirSync(runs)
    .map((r) => JSON.parse(readFileSync(join(runs, r, 'run.json'), 'utf8')))
    .filter((r) => !r.finished);
  if (open.length !== 1) throw new Error(`expected one unfinished (resumable) run, found ${open.length}`);
  const leftovers = readdirSync(join(runs, open[0].id)).filter((f) => f.includes('.tmp'));
  if (leftovers.length) throw new Error(`half-written files after cancel: ${leftovers.join(', ')}`);
  if (!existsSync(join(runs, open[0].id, 'chunks.jsonl'))) throw new Error('the cancelled run has no saved chunks');
  void page;
}
