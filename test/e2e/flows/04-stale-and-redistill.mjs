// Editing the doc marks the adapter stale (status bar); re-distilling brings it up to date.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { explorerMenu, jobs } from './02-distill-from-explorer.mjs';

export const title = 'stale adapter after an edit, re-distillation';

export async function run(h) {
  const { ws, statusBar, shot, waitFor, webview } = h;
  const p = join(ws, 'docs', h.docs[0]);
  const who = h.facts.docs[0].entity.name;
  writeFileSync(
    p,
    readFileSync(p, 'utf8').replace(/\s*$/, ` ${who} has a sibling named ${h.facts.docs[1].entity.name}.\n`),
  );
  await waitFor(
    async () => /stale adapter/.test(await statusBar().innerText()),
    90_000,
    'the adapter to be marked stale',
  );
  await shot('09-stale-adapter');
  await h.command('DocDistill: Open Dashboard');
  const before = (await jobs(h)).n;
  await (await explorerMenu(h, h.docs[0], 'Distill into Model')).click();
  await waitFor(
    async () => {
      const j = await jobs(h);
      return j.n > before && j.latest === 'done';
    },
    300_000,
    'the re-distillation to finish',
  );
  await waitFor(async () => !/stale/.test(await statusBar().innerText()), 30_000, 'the stale mark to go');
  await h.command('DocDistill: Open Dashboard');
  await (
    await webview('DocDistill')
  )
    .locator('table.adapters td', { hasText: 'up to date' })
    .first()
    .waitFor({ timeout: 30_000 });
  await shot('10-redistilled-up-to-date');
}
