// Safe document reads (issue 18, items 1–3): links that lead out of the workspace, special files
// (a FIFO, /dev/zero), and an adapter's recorded sources naming files outside. Each test builds the
// bad input in a temporary folder, with a "secret" next to the workspace, and checks the message
// names the cause, the secret's text reaches nothing DocDistill wrote, and the outside folder is
// as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Backend } from '../../../src/engine/backend';
import { CausalLM } from '../../../src/engine/models/model';
import { Distiller, CancelledError } from '../../../src/pipeline/distill';
import { DocsWatcher, leadsOutside } from '../../../src/host/watcher';
import {
  collectMarkdown,
  confine,
  MAX_DOC_BYTES,
  readDocument,
  readDocumentSync,
  readMarkdown,
  recordedSources,
} from '../../../src/pipeline/docFiles';

const repo = resolve(__dirname, '..', '..', '..');
const modelDir = process.env.DOCDISTILL_TEST_MODEL ?? join(repo, 'media', 'demo-model');
const SECRET = 'hunter2-the-secret-password';
const windows = process.platform === 'win32';

/** A temporary folder with ws/ (the workspace, docs/a.md in it) and outside/secret.md next to it. */
function setup(): { top: string; root: string; outside: string; snapshot: () => string; done: () => void } {
  const top = mkdtempSync(join(tmpdir(), 'dd-docfiles-'));
  const root = join(top, 'ws');
  const outside = join(top, 'outside');
  mkdirSync(join(root, 'docs'), { recursive: true });
  mkdirSync(join(outside, 'dir'), { recursive: true });
  writeFileSync(join(root, 'docs', 'a.md'), '# Alpha\n\nAlpha lives in Brill and plays the lute.\n');
  writeFileSync(join(outside, 'secret.md'), `# Secret\n\nThe password is ${SECRET}.\n`);
  writeFileSync(join(outside, 'dir', 'more.md'), `# More\n\n${SECRET} again.\n`);
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)],
    );
  // What the outside folder holds: names, sizes and modification times (nothing may write there).
  const snapshot = () =>
    walk(outside)
      .map((f) => `${f} ${statSync(f).size} ${statSync(f).mtimeMs}`)
      .join('\n');
  return { top, root, outside, snapshot, done: () => rmSync(top, { recursive: true, force: true }) };
}

/** Every file under dir whose text contains the secret. */
function leaked(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name)) : e.isFile() ? [join(d, e.name)] : [],
    );
  return walk(dir).filter((f) => readFileSync(f).includes(SECRET));
}

let modelP: Promise<CausalLM> | undefined;
const model = () =>
  (modelP ??= Backend.create({ device: 'cpu', threads: 2 }).then((be) => CausalLM.load(modelDir, be)));

/** Runs the Distiller's ingest phase only (cancelled right after it), returning its warnings. */
async function ingestOnly(root: string, inputs: string[], name = 'notes'): Promise<string[]> {
  const warns: string[] = [];
  const abort = new AbortController();
  const d = new Distiller(
    await model(),
    { inputs, root, name, settings: { rounds: 1, questionsPerRound: 1 } },
    {
      signal: abort.signal,
      onEvent: (e) => {
        if (e.type === 'log' && e.level === 'warn') warns.push(e.message);
        if (e.type === 'phase' && e.phase === 'ingest' && e.status === 'done') abort.abort();
      },
    },
  );
  await assert.rejects(d.run(), CancelledError);
  return warns;
}

test(
  'item 1: a document or folder that links out of the workspace is not read, anywhere',
  { skip: windows && 'symlinks need privileges on Windows' },
  async () => {
    const t = setup();
    try {
      symlinkSync(join(t.outside, 'secret.md'), join(t.root, 'docs', 'notes.md'));
      symlinkSync(join(t.outside, 'dir'), join(t.root, 'docs', 'shared'));
      symlinkSync('a.md', join(t.root, 'docs', 'alias.md')); // a link that stays inside is fine
      symlinkSync('..', join(t.root, 'docs', 'loop')); // and a loop is walked once
      // The one check, directly: real paths, not path text.
      assert.throws(
        () => confine(t.root, 'docs/notes.md'),
        /docs\/notes\.md: leads to .*secret\.md \(through a symbolic link\), outside the workspace/,
      );
      assert.throws(() => readDocumentSync(t.root, 'docs/notes.md'), /outside the workspace/);
      await assert.rejects(
        readDocument(t.root, 'docs/shared/more.md'),
        /docs\/shared\/more\.md: leads to .*more\.md \(through a symbolic link\), outside the workspace/,
      );
      assert.throws(
        () => confine(t.root, '../outside/secret.md'),
        /document \.\.\/outside\/secret\.md is outside the workspace/,
      );
      assert.equal(readDocumentSync(t.root, 'docs/alias.md'), readFileSync(join(t.root, 'docs', 'a.md'), 'utf8'));
      // The watcher ignores what leads out (and still hears about deletions).
      assert.equal(leadsOutside(t.root, join(t.root, 'docs', 'shared')), true);
      assert.equal(leadsOutside(t.root, join(t.root, 'docs', 'a.md')), false);
      assert.equal(leadsOutside(t.root, join(t.root, 'docs', 'gone.md')), false);
      // The real watcher hears a change inside, and nothing behind the link that leads out.
      const heard: string[] = [];
      const watcher = new DocsWatcher(
        t.root,
        'docs/**/*.md',
        (files) => heard.push(...files),
        () => {},
        50,
      );
      try {
        await watcher.ready();
        writeFileSync(join(t.outside, 'dir', 'more.md'), `# More\n\n${SECRET} changed.\n`);
        writeFileSync(join(t.root, 'docs', 'a.md'), '# Alpha\n\nAlpha lives in Brill and plays the lute well.\n');
        for (let i = 0; i < 100 && !heard.includes('docs/a.md'); i++) await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, 400));
      } finally {
        watcher.dispose();
      }
      assert.ok(heard.includes('docs/a.md'), heard.join(', '));
      assert.deepEqual(
        heard.filter((f) => f.includes('shared') || f.includes('notes')),
        [],
      );
      const before = t.snapshot(); // (the test itself wrote outside above; DocDistill may not from here on)
      // Ingest: the links that lead out are skipped with a warning that says where they lead.
      const warns: string[] = [];
      const files = collectMarkdown(['docs'], t.root, (m) => warns.push(m));
      assert.deepEqual(
        files.map((f) => f.slice(t.root.length + 1)),
        ['docs/a.md', 'docs/alias.md'],
      );
      assert.ok(
        warns.some((w) =>
          /docs\/notes\.md: leads to .*secret\.md \(through a symbolic link\), outside the workspace .* skipped/.test(
            w,
          ),
        ),
        warns.join('\n'),
      );
      assert.ok(
        warns.some((w) => /docs\/shared: leads to .*outside.* outside the workspace .* skipped/.test(w)),
        warns.join('\n'),
      );
      const runWarns = await ingestOnly(t.root, ['docs']);
      assert.ok(
        runWarns.some((w) =>
          /docs\/notes\.md: leads to .*secret\.md \(through a symbolic link\), outside the workspace.*skipped/.test(w),
        ),
        runWarns.join('\n'),
      );
      assert.ok(
        runWarns.some((w) => /docs\/shared: leads to/.test(w)),
        runWarns.join('\n'),
      );
      const chunks = readdirSync(join(t.root, '.docdistill', 'runs'))
        .map((r) => readFileSync(join(t.root, '.docdistill', 'runs', r, 'chunks.jsonl'), 'utf8'))
        .join('');
      assert.match(chunks, /plays the lute/);
      assert.deepEqual(leaked(t.root), []);
      // An input named outside the workspace is refused outright.
      await assert.rejects(
        new Distiller(await model(), { inputs: ['../outside/secret.md'], root: t.root, name: 'x' }).run(),
        /input \.\.\/outside\/secret\.md is outside the workspace/,
      );
      await assert.rejects(
        new Distiller(await model(), { inputs: ['docs/notes.md'], root: t.root, name: 'x' }).run(),
        /docs\/notes\.md: leads to .* outside the workspace/,
      );
      assert.deepEqual(leaked(t.root), []);
      assert.equal(t.snapshot(), before);
    } finally {
      t.done();
    }
  },
);

test(
  'item 2: a FIFO does not hang a read, /dev/zero does not grow memory, only regular files are read',
  { skip: windows && 'no FIFOs on Windows' },
  async () => {
    const t = setup();
    try {
      const before = t.snapshot();
      execFileSync('mkfifo', [join(t.root, 'docs', 'pipe.md')]);
      symlinkSync('/dev/zero', join(t.root, 'docs', 'zero.md'));
      const t0 = Date.now();
      await assert.rejects(
        readDocument(t.root, 'docs/pipe.md'),
        /docs\/pipe\.md: is a named pipe \(FIFO\), not a regular file; DocDistill reads only regular Markdown files/,
      );
      assert.throws(() => readDocumentSync(t.root, 'docs/pipe.md'), /is a named pipe \(FIFO\)/);
      assert.throws(
        () => readDocumentSync(t.root, 'docs/zero.md'),
        /docs\/zero\.md: leads to \/dev\/zero .*outside the workspace/,
      );
      // Even without the workspace check (readMarkdown has none), a device is refused on its
      // descriptor before a byte is read: no unbounded read of an endless file.
      const heap0 = process.memoryUsage().rss;
      assert.throws(() => readMarkdown('/dev/zero'), /\/dev\/zero: is a device, not a regular file/);
      assert.ok(process.memoryUsage().rss - heap0 < 64 * 2 ** 20, 'reading /dev/zero did not grow memory');
      assert.throws(() => readMarkdown(join(t.root, 'docs')), /is a folder, not a regular file/);
      // The cap counts bytes read (not what stat said), so a file cannot slip past it.
      writeFileSync(join(t.root, 'docs', 'huge.md'), Buffer.alloc(MAX_DOC_BYTES + 10, 0x61));
      await assert.rejects(
        readDocument(t.root, 'docs/huge.md'),
        /docs\/huge\.md: 8\.0 MB is more than the 8 MB a document may have; split it/,
      );
      // Cancellable between chunks: the Distiller's cancellation check stops a read.
      await assert.rejects(
        readDocument(t.root, 'docs/a.md', () => {
          throw new CancelledError();
        }),
        CancelledError,
      );
      // A whole ingest with both in the docs finishes, skipping them with the reason.
      const warns = await ingestOnly(t.root, ['docs']);
      assert.ok(Date.now() - t0 < 60_000);
      assert.ok(
        warns.some((w) => /docs\/pipe\.md: is a named pipe \(FIFO\), not a regular file.*skipped/.test(w)),
        warns.join('\n'),
      );
      assert.ok(
        warns.some((w) => /docs\/zero\.md: leads to \/dev\/zero/.test(w)),
        warns.join('\n'),
      );
      assert.ok(
        warns.some((w) => /docs\/huge\.md: 8\.0 MB is more than/.test(w)),
        warns.join('\n'),
      );
      assert.equal(t.snapshot(), before);
    } finally {
      t.done();
    }
  },
);

test(
  "item 3: sources an adapter's docdistill.json records outside the workspace are not read on re-distillation",
  { skip: windows && 'symlinks need privileges on Windows' },
  async () => {
    const t = setup();
    try {
      const before = t.snapshot();
      symlinkSync(join(t.outside, 'secret.md'), join(t.root, 'docs', 'notes.md'));
      const recorded = [
        { source: 'docs/a.md', hash: 'x' },
        { source: '../outside/secret.md', hash: 'y' },
        { source: join(t.outside, 'secret.md'), hash: 'z' },
        { source: 'docs/notes.md', hash: 'w' },
        { source: 'docs/deleted.md', hash: 'v' },
      ];
      const warns: string[] = [];
      assert.deepEqual(
        recordedSources(recorded, t.root, (m) => warns.push(m), 'adapter notes'),
        ['docs/a.md'],
      );
      assert.equal(warns.length, 3, warns.join('\n'));
      assert.match(
        warns[0]!,
        /adapter notes's docdistill\.json records "\.\.\/outside\/secret\.md", which is not read: recorded source \.\.\/outside\/secret\.md is outside the workspace/,
      );
      assert.match(
        warns[2]!,
        /records "docs\/notes\.md", which is not read: docs\/notes\.md: leads to .*outside the workspace/,
      );
      // A committed adapter whose docdistill.json names them: re-distilling it reads docs/a.md only.
      const m = await model();
      const adapter = join(t.root, '.docdistill', 'adapters', 'notes');
      mkdirSync(adapter, { recursive: true });
      writeFileSync(
        join(adapter, 'docdistill.json'),
        JSON.stringify({
          name: 'notes',
          model: resolve(m.dir!),
          created: '',
          runId: 'r',
          chunks: recorded,
          chunkBudget: 256,
          settings: {},
        }),
      );
      writeFileSync(join(t.root, 'docs', 'b.md'), '# Beta\n\nBeta lives in Corm.\n');
      const runWarns = await ingestOnly(t.root, ['docs/b.md']);
      assert.ok(
        runWarns.some((w) =>
          /adapter notes's docdistill\.json records "\.\.\/outside\/secret\.md", which is not read/.test(w),
        ),
        runWarns.join('\n'),
      );
      const run = readdirSync(join(t.root, '.docdistill', 'runs'))[0]!;
      const sources = readFileSync(join(t.root, '.docdistill', 'runs', run, 'chunks.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { source: string }).source);
      assert.deepEqual([...new Set(sources)].sort(), ['docs/a.md', 'docs/b.md']);
      assert.deepEqual(leaked(t.root), []);
      assert.equal(t.snapshot(), before);
    } finally {
      t.done();
    }
  },
);
