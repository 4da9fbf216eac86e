// Host-side pieces that run without VS Code: the model-folder check, the docs watcher (real
// chokidar on real files), glob matching, and hub downloads against a local HTTP server that
// serves the hub's URLs (resume, verification, errors, cancel).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { checkModelFolder } from '../../../src/host/modelFolder';
import { DocsWatcher, globBase, globToRegExp } from '../../../src/host/watcher';
import { downloadFromHub, looksLikeHubId } from '../../../src/host/hub';

const repo = resolve(__dirname, '..', '..', '..');
const tmp = () => mkdtempSync(join(tmpdir(), 'dd-host-'));

test('model folder check names what is missing or unsupported', () => {
  const d = tmp();
  try {
    assert.match(checkModelFolder(join(d, 'nope'))!, /does not exist/);
    assert.match(checkModelFolder(d)!, /no config.json/);
    writeFileSync(join(d, 'config.json'), '{oops');
    assert.match(checkModelFolder(d)!, /not valid JSON/);
    writeFileSync(join(d, 'config.json'), JSON.stringify({ architectures: ['GPT2LMHeadModel'] }));
    assert.match(checkModelFolder(d)!, /GPT2LMHeadModel is not supported; supported: LlamaForCausalLM/);
    writeFileSync(join(d, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'] }));
    writeFileSync(join(d, 'pytorch_model.bin'), 'x');
    assert.match(checkModelFolder(d)!, /never loaded/);
    writeFileSync(join(d, 'model.safetensors'), 'x');
    assert.match(checkModelFolder(d)!, /no tokenizer.json/);
    writeFileSync(join(d, 'tokenizer.json'), '{}');
    assert.equal(checkModelFolder(d), undefined);
    assert.equal(
      checkModelFolder(join(repo, 'test', 'fixtures', 'models', 'tiny-llama'))?.includes('tokenizer.json'),
      true,
    );
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('globs match as VS Code settings mean them', () => {
  const re = globToRegExp('docs/**/*.md');
  assert.ok(re.test('docs/a.md') && re.test('docs/x/y/b.md'));
  assert.ok(!re.test('docs/a.txt') && !re.test('other/a.md') && !re.test('docs/a.md.bak'));
  assert.ok(globToRegExp('**/*.{md,markdown}').test('a/b/c.markdown'));
  // Character classes, as workspace.findFiles (Distill Docs Folder) reads them.
  const cls = globToRegExp('docs/[a-c]*.md');
  assert.ok(cls.test('docs/alpha.md') && cls.test('docs/c.md'));
  assert.ok(!cls.test('docs/delta.md') && !cls.test('docs/[a-c]x.md'));
  const neg = globToRegExp('docs/[!_]*.md');
  assert.ok(neg.test('docs/guide.md') && !neg.test('docs/_draft.md'));
  assert.equal(globBase('docs/**/*.md'), 'docs');
  assert.equal(globBase('**/*.md'), '');
  assert.equal(globBase('guide/intro.md'), 'guide');
});

test('the watcher reports changed docs once, debounced, and ignores .docdistill', async () => {
  const root = tmp();
  mkdirSync(join(root, 'docs', 'sub'), { recursive: true });
  writeFileSync(join(root, 'docs', 'a.md'), '# A');
  const batches: string[][] = [];
  const w = new DocsWatcher(
    root,
    'docs/**/*.md',
    (f) => batches.push(f),
    () => {},
    300,
  );
  try {
    await w.ready();
    writeFileSync(join(root, 'docs', 'a.md'), '# A changed');
    writeFileSync(join(root, 'docs', 'sub', 'b.md'), '# B');
    writeFileSync(join(root, 'docs', 'notes.txt'), 'not markdown');
    mkdirSync(join(root, 'docs', '.docdistill'), { recursive: true });
    writeFileSync(join(root, 'docs', '.docdistill', 'x.md'), 'ignored');
    const deadline = Date.now() + 8000;
    while (!batches.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 800));
    assert.deepEqual(batches, [['docs/a.md', 'docs/sub/b.md']]);
  } finally {
    w.dispose();
    rmSync(root, { recursive: true, force: true });
  }
});

function hubServer(
  files: Record<string, Buffer>,
  opts: { corrupt?: string; dropAfter?: number } = {},
): Promise<{ url: string; server: Server; hits: string[] }> {
  const hits: string[] = [];
  let dropped = false;
  const server = createServer((req, res) => {
    const url = req.url ?? '';
    hits.push(`${req.method} ${url} ${req.headers.range ?? ''}`);
    if (url.startsWith('/api/models/acme/tiny/revision/main')) {
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          siblings: [
            ...Object.entries(files).map(([name, data]) => ({
              rfilename: name,
              size: data.length,
              ...(name.endsWith('.safetensors')
                ? { lfs: { sha256: createHash('sha256').update(data).digest('hex'), size: data.length } }
                : { blobId: createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex') }),
            })),
            { rfilename: 'pytorch_model.bin', size: 3 },
            { rfilename: 'modeling_evil.py', size: 3 },
          ],
        }),
      );
      return;
    }
    if (url.startsWith('/api/models/')) {
      res.statusCode = 404;
      res.end('{}');
      return;
    }
    const m = /^\/acme\/tiny\/resolve\/main\/(.+)$/.exec(url);
    if (!m || !files[m[1]!]) {
      res.statusCode = 404;
      res.end();
      return;
    }
    let data = files[m[1]!]!;
    if (opts.corrupt === m[1]) data = Buffer.from(data.map((b, i) => (i === 5 ? b ^ 1 : b)));
    let start = 0;
    const r = /bytes=(\d+)-/.exec(req.headers.range ?? '');
    if (r) {
      start = Number(r[1]);
      res.statusCode = 206;
      res.setHeader('content-range', `bytes ${start}-${data.length - 1}/${data.length}`);
    }
    res.setHeader('content-length', String(data.length - start));
    if (opts.dropAfter && !dropped && m[1]!.endsWith('.safetensors')) {
      dropped = true;
      res.write(data.subarray(start, start + opts.dropAfter));
      setTimeout(() => res.destroy(), 20);
      return;
    }
    res.end(data.subarray(start));
  });
  return new Promise((ok) =>
    server.listen(0, '127.0.0.1', () =>
      ok({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server, hits }),
    ),
  );
}

test('hub download: only needed files, resumed after a dropped connection, verified', async () => {
  const weights = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7) % 251));
  const files = {
    'config.json': Buffer.from('{"architectures":["LlamaForCausalLM"]}'),
    'tokenizer.json': Buffer.from('{}'),
    'model.safetensors': weights,
  };
  const { url, server, hits } = await hubServer(files, { dropAfter: 50_000 });
  const dest = join(tmp(), 'acme--tiny');
  try {
    assert.ok(looksLikeHubId('acme/tiny') && !looksLikeHubId('../etc/passwd') && !looksLikeHubId('a/b/c'));
    await assert.rejects(downloadFromHub('acme/tiny', dest, { endpoint: url }), /model.safetensors/);
    assert.ok(existsSync(join(dest, 'model.safetensors.part')), 'the partial file is kept');
    const progress: number[] = [];
    const got = await downloadFromHub('acme/tiny', dest, { endpoint: url, onProgress: (d) => progress.push(d) });
    assert.deepEqual(got.sort(), ['config.json', 'model.safetensors', 'tokenizer.json']);
    assert.deepEqual(readFileSync(join(dest, 'model.safetensors')), weights);
    assert.ok(
      !existsSync(join(dest, 'modeling_evil.py')) && !existsSync(join(dest, 'pytorch_model.bin')),
      'no code or pickles downloaded',
    );
    assert.ok(
      hits.some((h) => /model\.safetensors bytes=\d+-/.test(h)),
      'the second attempt resumed with a Range request',
    );
    assert.ok(progress.at(-1)! >= weights.length);
    await assert.rejects(downloadFromHub('acme/missing', join(dest, 'x'), { endpoint: url }), /no such model/);
  } finally {
    server.close();
    rmSync(dest, { recursive: true, force: true });
  }
});

test('hub download: a corrupted file fails the checksum and is removed; cancel stops', async () => {
  const weights = Buffer.alloc(10_000, 3);
  const { url, server } = await hubServer(
    { 'config.json': Buffer.from('{}'), 'model.safetensors': weights },
    { corrupt: 'model.safetensors' },
  );
  const dest = join(tmp(), 'm');
  try {
    await assert.rejects(downloadFromHub('acme/tiny', dest, { endpoint: url }), /checksum mismatch/);
    assert.ok(!existsSync(join(dest, 'model.safetensors.part')) && !existsSync(join(dest, 'model.safetensors')));
    // Cancelled between files: the download stops with the cancellation (not some other error),
    // keeps what it finished, and fetches nothing more.
    const ac = new AbortController();
    const files: string[] = [];
    await assert.rejects(
      downloadFromHub('acme/tiny', dest, {
        endpoint: url,
        signal: ac.signal,
        onProgress: (_d, _t, f) => (files.push(f), f === 'config.json' && ac.abort()),
      }),
      /download cancelled; start it again to resume/,
    );
    assert.ok(existsSync(join(dest, 'config.json')), 'the file finished before the cancel is kept');
    assert.ok(!existsSync(join(dest, 'model.safetensors')) && !existsSync(join(dest, 'model.safetensors.part')));
    assert.ok(!files.includes('model.safetensors'), 'nothing fetched after the cancel');
    // Cancelled before it starts: the request is aborted, nothing is written.
    rmSync(dest, { recursive: true, force: true });
    const before = new AbortController();
    before.abort();
    await assert.rejects(
      downloadFromHub('acme/tiny', dest, { endpoint: url, signal: before.signal }),
      (e: Error) => e.name === 'AbortError' || /download cancelled/.test(e.message),
    );
    assert.ok(!existsSync(dest));
  } finally {
    server.close();
    rmSync(dest, { recursive: true, force: true });
  }
});
