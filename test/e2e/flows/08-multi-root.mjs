// A multi-root workspace (a .code-workspace file with two folders, each with its own docs and its
// own folder-level settings): "Distill Docs Folder" asks which folder, uses that folder's docs glob,
// adapter name and distillation settings, and writes the adapter into that folder's .docdistill/;
// the other folder's settings do not leak in, and the Docs view and the Explorer badges show each
// folder's state. Then the Explorer menu on a doc of the first folder switches to that folder (its
// worker, its settings), and a change to the second folder's doc makes only its adapter stale.
// Opens the single-folder fixture workspace again at the end.
import { existsSync, mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { explorerMenu } from './02-distill-from-explorer.mjs';

export const title = 'multi-root workspace: per-folder docs, settings and adapters';

const repo = resolve(import.meta.dirname, '..', '..', '..');

export async function run(h) {
  const { page, shot, waitFor, command, log } = h;
  const base = join(h.home, 'multi-root');
  const alpha = join(base, 'alpha');
  const beta = join(base, 'beta');
  const [docA, docB] = h.docs;
  // alpha: docs under the default glob, its own adapter name and LoRA rank, a short distillation.
  mkdirSync(join(alpha, 'docs'), { recursive: true });
  mkdirSync(join(alpha, '.vscode'), { recursive: true });
  copyFileSync(join(repo, 'examples', 'docs', docA), join(alpha, 'docs', docA));
  writeFileSync(
    join(alpha, '.vscode', 'settings.json'),
    JSON.stringify(
      {
        'docdistill.adapterName': 'alpha-docs',
        'docdistill.distill.loraRank': 8,
        'docdistill.distill.rounds': 1,
        'docdistill.distill.questionsPerRound': 3,
        'docdistill.distill.epochs': 2,
      },
      null,
      2,
    ),
  );
  // beta: docs under notes/ (its own glob), its own adapter name, a short distillation.
  mkdirSync(join(beta, 'notes'), { recursive: true });
  mkdirSync(join(beta, '.vscode'), { recursive: true });
  copyFileSync(join(repo, 'examples', 'docs', docB), join(beta, 'notes', docB));
  writeFileSync(
    join(beta, '.vscode', 'settings.json'),
    JSON.stringify(
      {
        'docdistill.adapterName': 'beta-notes',
        'docdistill.docsGlob': 'notes/**/*.md',
        'docdistill.distill.rounds': 2,
        'docdistill.distill.questionsPerRound': 3,
        'docdistill.distill.epochs': 4,
      },
      null,
      2,
    ),
  );
  const wsFile = join(base, 'multi.code-workspace');
  writeFileSync(wsFile, JSON.stringify({ folders: [{ path: 'alpha' }, { path: 'beta' }], settings: {} }, null, 2));

  const origin = new URL(page.url()).origin;
  await page.goto(`${origin}/?workspace=${encodeURIComponent(wsFile)}`);
  await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
  // code-server sometimes opens the workspace empty ("No folder opened": it read the workspace while
  // the previous window was still closing); that is the harness, not the extension: load it again.
  const empty = page.locator('.explorer-folders-view, .pane-header', { hasText: /no folder opened/i });
  const ready = page.locator('#workbench\\.parts\\.statusbar', { hasText: 'DocDistill' });
  const quiet = (p) =>
    p.then(
      () => true,
      () => false,
    );
  for (let attempt = 1; ; attempt++) {
    await Promise.race([quiet(ready.waitFor({ timeout: 60_000 })), quiet(empty.first().waitFor({ timeout: 60_000 }))]);
    // An empty explorer can show for a moment before the folders load: give them 15 s more.
    if ((await ready.isVisible()) || (await quiet(ready.waitFor({ timeout: 15_000 })))) break;
    if (attempt === 3) throw new Error('the multi-root workspace opened without its folders three times');
    log(`the workspace opened without its folders (attempt ${attempt}); loading it again`);
    await page.waitForTimeout(2000);
    await page.goto(`${origin}/?workspace=${encodeURIComponent(wsFile)}`);
    await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
  }
  await page.waitForTimeout(1000);

  // The palette command asks for the folder; pick the second one.
  await command('DocDistill: Distill Docs Folder');
  const pick = page.locator('.quick-input-list .monaco-list-row', { hasText: 'beta' }).first();
  await pick.waitFor({ timeout: 15_000 });
  const offered = (await page.locator('.quick-input-list').innerText()).replace(/\s+/g, ' ');
  if (!/alpha/.test(offered)) throw new Error(`the folder pick should offer both folders: ${offered}`);
  await pick.click();
  const adapterB = join(beta, '.docdistill', 'adapters', 'beta-notes', 'docdistill.json');
  await waitFor(
    async () => /DocDistill: (ingest|questions|answers|train|starting)/.test(await h.statusBar().innerText()),
    60_000,
    'the job in the status bar',
  );
  await waitFor(async () => existsSync(adapterB), 600_000, `the adapter at ${adapterB}`);
  await waitFor(
    async () =>
      !/sync~spin|DocDistill: (ingest|questions|answers|train|evaluate)/.test(await h.statusBar().innerText()),
    120_000,
    'the status bar to go idle',
  );

  // The adapter is beta's: in beta's .docdistill, named by beta's setting, from beta's glob, with
  // beta's folder-level settings, and none of alpha's.
  if (existsSync(join(alpha, '.docdistill', 'adapters')))
    throw new Error("an adapter was written into the first folder's .docdistill/adapters");
  for (const other of ['docs', 'alpha-docs'])
    if (existsSync(join(beta, '.docdistill', 'adapters', other)))
      throw new Error(`an adapter named "${other}" was written: beta's docdistill.adapterName was not read`);
  const rawB = readFileSync(adapterB, 'utf8');
  const info = JSON.parse(rawB);
  const sources = [...new Set(info.chunks.map((c) => c.source))];
  if (sources.join() !== `notes/${docB}`)
    throw new Error(`beta's adapter should be distilled from notes/${docB} (its docs glob): ${sources.join(', ')}`);
  const s = info.settings;
  log(
    `  beta's adapter: sources ${sources.join(', ')}; rounds ${s.rounds}, questionsPerRound ${s.questionsPerRound}, epochs ${s.epochs}, loraRank ${s.loraRank}`,
  );
  if (s.rounds !== 2 || s.questionsPerRound !== 3 || s.epochs !== 4)
    throw new Error(`beta's folder-level distill settings were not applied: ${JSON.stringify(s)}`);
  if (s.loraRank === 8) throw new Error("alpha's folder-level loraRank leaked into beta's adapter");
  if (!existsSync(join(beta, '.docdistill', '.gitignore'))) throw new Error("beta's .docdistill/.gitignore is missing");

  // Explorer: the D badge on beta's doc, none on alpha's.
  await command('View: Show Explorer');
  const tree = page.locator('.explorer-folders-view');
  const badge = (row) =>
    row.evaluate((r) => [...r.querySelectorAll('*')].map((e) => getComputedStyle(e, '::after').content).join(' '));
  const reveal = async (file, dirs) => {
    const row = tree.locator('.monaco-list-row', { hasText: file }).first();
    for (const d of dirs) {
      if (await row.count()) break;
      const dr = tree.locator('.monaco-list-row', { hasText: new RegExp(`^\\s*${d}\\s*$`) }).first();
      if ((await dr.getAttribute('aria-expanded')) !== 'true') await dr.click();
      await page.waitForTimeout(300);
    }
    await row.waitFor({ timeout: 10_000 });
    return row;
  };
  const exB = await reveal(docB, ['beta', 'notes']);
  await waitFor(async () => (await badge(exB)).includes('"D"'), 20_000, `the D badge on beta/notes/${docB}`);
  const exA = await reveal(docA, ['alpha', 'docs']);
  if ((await badge(exA)).includes('"D"'))
    throw new Error(`alpha/docs/${docA} carries the D badge though only beta was distilled`);

  // The first folder from the Explorer menu: DocDistill switches to alpha (its own worker root and settings).
  const entry = await explorerMenu(h, docA, 'Distill into Model');
  await entry.click();
  const adapterA = join(alpha, '.docdistill', 'adapters', 'alpha-docs', 'docdistill.json');
  await waitFor(async () => existsSync(adapterA), 600_000, `the adapter at ${adapterA}`);
  await waitFor(
    async () =>
      !/sync~spin|DocDistill: (ingest|questions|answers|train|evaluate)/.test(await h.statusBar().innerText()),
    120_000,
    'the status bar to go idle',
  );
  const infoA = JSON.parse(readFileSync(adapterA, 'utf8'));
  const sA = infoA.settings;
  log(
    `  alpha's adapter: sources ${[...new Set(infoA.chunks.map((c) => c.source))].join(', ')}; rounds ${sA.rounds}, epochs ${sA.epochs}, loraRank ${sA.loraRank}`,
  );
  if (sA.loraRank !== 8 || sA.rounds !== 1 || sA.epochs !== 2)
    throw new Error(`alpha's folder-level distill settings were not applied (or beta's leaked): ${JSON.stringify(sA)}`);
  if (readFileSync(adapterB, 'utf8') !== rawB) throw new Error("distilling alpha changed beta's adapter");
  await waitFor(async () => (await badge(exA)).includes('"D"'), 20_000, `the D badge on alpha/docs/${docA}`);
  await exB.hover();
  await shot('14b-multi-root-explorer');

  // The Docs view: a node per folder, each with its own docs and state.
  await page.locator('.activitybar .action-item a[aria-label^="DocDistill"]').first().click();
  const pane = (name) => page.locator('.pane', { has: page.locator('.pane-header', { hasText: name }) });
  const docs = pane('Docs');
  for (const f of ['alpha', 'beta'])
    await docs.locator('.monaco-list-row', { hasText: f }).first().waitFor({ timeout: 30_000 });
  const rowB = docs.locator('.monaco-list-row', { hasText: docB }).first();
  const rowA = docs.locator('.monaco-list-row', { hasText: docA }).first();
  await waitFor(
    async () => /in beta-notes/.test(await rowB.innerText()),
    30_000,
    `the Docs view to show notes/${docB} in beta-notes`,
  );
  await waitFor(
    async () => /in alpha-docs/.test(await rowA.innerText()),
    30_000,
    `the Docs view to show docs/${docA} in alpha-docs`,
  );
  // The Adapters view says whose adapter each one is.
  const adapters = pane('Adapters');
  await adapters.locator('.monaco-list-row', { hasText: 'alpha-docs' }).first().waitFor({ timeout: 30_000 });
  const adapterRows = (await adapters.locator('.monaco-list-row').allInnerTexts()).map((r) => r.replace(/\s+/g, ' '));
  log(`  Adapters view: ${adapterRows.join(' | ')}`);
  if (
    adapterRows.length !== 2 ||
    !adapterRows.some((r) => /^\s*beta-notes\s*beta ·/.test(r)) ||
    !adapterRows.some((r) => /^\s*alpha-docs\s*alpha ·/.test(r))
  )
    throw new Error(
      `the Adapters view should list beta-notes (beta) and alpha-docs (alpha): ${adapterRows.join(' | ')}`,
    );
  // A change to beta's doc makes beta's adapter stale, and only beta's (alpha is the folder in use now).
  writeFileSync(
    join(beta, 'notes', docB),
    `${readFileSync(join(beta, 'notes', docB), 'utf8')}\nA line added after the adapter was distilled.\n`,
  );
  await waitFor(
    async () => /stale in beta-notes/.test(await rowB.innerText()),
    30_000,
    `the Docs view to show notes/${docB} stale in beta-notes`,
  );
  if (!/in alpha-docs/.test(await rowA.innerText()) || /stale/.test(await rowA.innerText()))
    throw new Error(`alpha's doc should still be distilled: ${await rowA.innerText()}`);
  await waitFor(
    async () => /stale/.test(await adapters.locator('.monaco-list-row', { hasText: 'beta-notes' }).first().innerText()),
    30_000,
    'beta-notes marked stale in the Adapters view',
  );
  if (/stale/.test(await adapters.locator('.monaco-list-row', { hasText: 'alpha-docs' }).first().innerText()))
    throw new Error("alpha-docs is marked stale though only beta's doc changed");
  // The badges follow: S on beta's doc, D still on alpha's (the Docs view rows carry them too).
  await waitFor(
    async () => (await badge(rowB)).includes('"S"') && (await badge(rowA)).includes('"D"'),
    30_000,
    "the S badge on beta's doc and the D badge on alpha's in the Docs view",
  );
  await adapters.locator('.monaco-list-row', { hasText: 'beta-notes' }).first().hover();
  await shot('14-multi-root');

  // Back to the single-folder fixture workspace for any flow after this one.
  await page.goto(`${origin}/?folder=${encodeURIComponent(h.ws)}`);
  await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
  await page.locator('#workbench\\.parts\\.statusbar', { hasText: 'DocDistill' }).waitFor({ timeout: 60_000 });
}
