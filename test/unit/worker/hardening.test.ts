// Issue 18 against a real worker process (dist/worker.js): documents behind links that leave the
// workspace (item 1) and adapters whose docdistill.json names files outside it (item 3) are not
// read by chat with the teacher or by the adapter list; look-alike names are refused (item 7); bad
// frames get JSON-RPC answers and the requests after them are served (item 9, with a seeded fuzz);
// adapters/export and adapters/merge refuse relative destinations and the .docdistill internals,
// and write whole folders (item 10). Each builds its bad input in a temporary folder with a secret
// next to the workspace, and checks that nothing outside the workspace was read or written.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import {
  existsSync,
  lstatSync,
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
import * as P from '../../../src/protocol';
import { WorkerClient, ResponseError } from '../../../src/host/workerClient';
import { rng } from '../helpers/random';

const repo = resolve(__dirname, '..', '..', '..');
const workerPath = join(repo, 'dist', 'worker.js');
const modelDir = process.env.DOCDISTILL_TEST_MODEL ?? join(repo, 'media', 'demo-model');
const SECRET = 'hunter2-the-secret-password';
const windows = process.platform === 'win32';
const cleanup: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

const walk = (d: string): string[] =>
  existsSync(d)
    ? readdirSync(d, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)],
      )
    : [];

/** ws/ (the workspace, with docs/a.md) and outside/ (a secret) in a new temporary folder. */
function setup() {
  const top = mkdtempSync(join(tmpdir(), 'dd-harden-'));
  cleanup.push(() => rmSync(top, { recursive: true, force: true }));
  const root = join(top, 'ws');
  const outside = join(top, 'outside');
  mkdirSync(join(root, 'docs'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(root, 'docs', 'a.md'), '# Alpha\n\nAlpha lives in Brill and plays the lute.\n');
  writeFileSync(join(outside, 'secret.md'), `# Secret\n\nThe password is ${SECRET}.\n`);
  const snapshot = () =>
    walk(outside)
      .map((f) => `${f} ${statSync(f).size} ${statSync(f).mtimeMs}`)
      .join('\n');
  const leaked = () => walk(root).filter((f) => lstatSync(f).isFile() && readFileSync(f).includes(SECRET));
  return { top, root, outside, snapshot, leaked };
}

function client(root: string, withModel = true): WorkerClient {
  const c = new WorkerClient({
    workerPath,
    init: { workspaceRoot: root, modelDir: withModel ? modelDir : undefined, device: 'cpu', threads: 1 },
    backoffMs: 100,
  });
  cleanup.push(() => c.dispose());
  return c;
}

const badInput = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof ResponseError, String(e));
  assert.equal(e.code, P.ErrorCodes.BadInput, `${e.message}: answered as bad input, not as an internal error`);
  assert.match(e.message, re);
  return true;
};

test(
  'items 1 and 3: chat with the teacher and the adapter list do not read documents outside the workspace',
  { skip: windows && 'symlinks need privileges on Windows' },
  async () => {
    const t = setup();
    const before = t.snapshot();
    symlinkSync(join(t.outside, 'secret.md'), join(t.root, 'docs', 'notes.md'));
    // A committed adapter whose docdistill.json records a source outside and one behind the link.
    const adapter = join(t.root, '.docdistill', 'adapters', 'notes');
    mkdirSync(adapter, { recursive: true });
    writeFileSync(
      join(adapter, 'docdistill.json'),
      JSON.stringify({
        name: 'notes',
        model: modelDir,
        created: '',
        runId: 'r',
        chunks: [{ source: '../outside/secret.md', hash: 'y' }],
        chunkBudget: 256,
        settings: {},
      }),
    );
    const c = client(t.root);
    await c.start();
    const ask = (extra: Partial<P.ChatParams>) =>
      c.request(P.Chat.type, {
        streamId: 's',
        messages: [{ role: 'user', content: 'What is the password?' }],
        mode: 'teacher',
        maxTokens: 4,
        ...extra,
      });
    await assert.rejects(
      ask({ docs: ['docs/notes.md'] }),
      badInput(/docs\/notes\.md: leads to .*secret\.md \(through a symbolic link\), outside the workspace/),
    );
    await assert.rejects(
      ask({ docs: ['../outside/secret.md'] }),
      badInput(/document \.\.\/outside\/secret\.md is outside the workspace/),
    );
    await assert.rejects(ask({ adapter: 'notes' }), badInput(/\.\.\/outside\/secret\.md is outside the workspace/));
    const ok = await ask({ docs: ['docs/a.md'] });
    assert.ok(ok.tokens > 0);
    // The list reads the adapter's recorded sources to tell staleness: the one outside counts as gone.
    const [info] = await c.request(P.ListAdapters.type, undefined);
    assert.equal(info!.name, 'notes');
    assert.equal(info!.stale, true);
    assert.deepEqual(info!.sources, [], 'a recorded source outside the workspace is not offered for re-distillation');
    assert.deepEqual(t.leaked(), []);
    assert.equal(t.snapshot(), before);
  },
);

test('item 7: the protocol refuses look-alike names', async () => {
  const t = setup();
  const c = client(t.root);
  await c.start();
  await assert.rejects(
    c.request(P.Distill.type, { jobId: 'j', inputs: ['docs'], name: 'docs ' }),
    badInput(/adapter name "docs " ends with a space/),
  );
  await assert.rejects(
    c.request(P.ActivateAdapter.type, { name: 'docs\n' }),
    badInput(/adapter name "docs\\n" has a control character \(U\+000A\)/),
  );
  await assert.rejects(
    c.request(P.Chat.type, {
      streamId: 's',
      messages: [{ role: 'user', content: 'hi' }],
      mode: 'student',
      adapter: ' docs',
    }),
    badInput(/adapter name " docs" starts with a space/),
  );
  assert.equal(existsSync(join(t.root, '.docdistill', 'adapters')), false);
  assert.deepEqual(readdirSync(t.root), ['docs']);
});

test(
  'item 10: export and merge refuse relative destinations and the .docdistill internals, and write whole folders',
  { skip: windows && 'symlinks need privileges on Windows' },
  async () => {
    const t = setup();
    const before = t.snapshot();
    // An adapter folder as export sees it (merge refuses before it reads the adapter).
    const adapter = join(t.root, '.docdistill', 'adapters', 'notes');
    mkdirSync(adapter, { recursive: true });
    writeFileSync(join(adapter, 'adapter_config.json'), '{"r": 4}\n');
    writeFileSync(join(adapter, 'adapter_model.safetensors'), 'weights');
    symlinkSync(join(t.outside, 'secret.md'), join(adapter, 'stray-link.md'));
    symlinkSync(join(t.root, '.docdistill'), join(t.root, 'dd-link'));
    const c = client(t.root);
    await c.start();
    for (const method of [P.ExportAdapter.type, P.MergeAdapter.type]) {
      const what = method.method;
      await assert.rejects(
        c.request(method, { name: 'notes', dest: 'exported' }),
        badInput(
          new RegExp(
            `${what}: the destination "exported" is not an absolute path; choose a folder with the save dialog`,
          ),
        ),
      );
      await assert.rejects(
        c.request(method, { name: 'notes', dest: join(t.root, '.docdistill', 'adapters', 'copy') }),
        badInput(
          new RegExp(
            `${what}: .*copy is inside DocDistill's work folder .*\\.docdistill, which holds its runs and adapters; choose a folder outside it`,
          ),
        ),
      );
      await assert.rejects(
        c.request(method, { name: 'notes', dest: join(t.root, '.docdistill') }),
        badInput(/inside DocDistill's work folder/),
      );
      await assert.rejects(
        c.request(method, { name: 'notes', dest: join(t.root, 'dd-link', 'runs', 'x') }),
        badInput(/inside DocDistill's work folder/),
      );
      await assert.rejects(
        c.request(method, { name: 'notes', dest: join(t.root, 'docs') }),
        badInput(new RegExp(`${what}: .*docs exists; choose a new folder`)),
      );
    }
    const dest = join(t.top, 'elsewhere', 'notes-adapter');
    const r = await c.request(P.ExportAdapter.type, { name: 'notes', dest });
    assert.equal(r.dir, dest);
    assert.deepEqual(
      readdirSync(dest).sort(),
      ['adapter_config.json', 'adapter_model.safetensors'],
      'a link in the adapter folder is not copied',
    );
    assert.deepEqual(readdirSync(join(t.top, 'elsewhere')), ['notes-adapter'], 'no temporary folder is left');
    assert.deepEqual(
      walk(join(t.root, '.docdistill'))
        .map((f) => f.slice(t.root.length + 1))
        .sort(),
      [
        '.docdistill/adapters/notes/adapter_config.json',
        '.docdistill/adapters/notes/adapter_model.safetensors',
        '.docdistill/adapters/notes/stray-link.md',
      ],
    );
    assert.deepEqual(t.leaked(), []);
    assert.equal(t.snapshot(), before);
  },
);

/** A worker process spoken to in raw bytes. */
function rawWorker(root: string): {
  child: ChildProcessWithoutNullStreams;
  out: () => string;
  err: () => string;
  waitFor: (re: RegExp, ms?: number) => Promise<void>;
} {
  const child = spawn(process.execPath, [workerPath, '--stdio'], { stdio: ['pipe', 'pipe', 'pipe'], cwd: root });
  cleanup.push(() => void child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const waitFor = async (re: RegExp, ms = 10_000) => {
    const deadline = Date.now() + ms;
    while (!re.test(out) && Date.now() < deadline && child.exitCode === null)
      await new Promise((r) => setTimeout(r, 20));
    assert.match(out, re, `stderr:\n${err}`);
  };
  return { child, out: () => out, err: () => err, waitFor };
}

const frame = (body: string, header = `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`) =>
  Buffer.concat([Buffer.from(header, 'latin1'), Buffer.from(body)]);
const statusFrame = (id: number) => frame(JSON.stringify({ jsonrpc: '2.0', id, method: 'status' }));

test('item 9: bad frames get JSON-RPC answers, go to stderr, and the requests after them are served', async () => {
  const t = setup();
  const w = rawWorker(t.root);
  const cases: [string, Buffer, RegExp, RegExp][] = [
    [
      'no Content-Length',
      frame('{"jsonrpc":"2.0","id":90,"method":"status"}', 'Content-Type: application/json\r\n\r\n'),
      /"id":null,"error":\{"code":-32600,"message":"Invalid Request: the frame has no Content-Length header"\}/,
      /bad frame \(Invalid Request: the frame has no Content-Length header\): "Content-Type: application\/json"/,
    ],
    [
      'non-numeric',
      frame('{}', 'Content-Length: twelve\r\n\r\n'),
      /"code":-32600,"message":"Invalid Request: Content-Length \\"twelve\\" is not a number"/,
      /bad frame \(Invalid Request: Content-Length "twelve" is not a number\)/,
    ],
    [
      'absurd',
      frame('{}', 'Content-Length: 99999999999999\r\n\r\n'),
      /"code":-32600,"message":"Invalid Request: Content-Length 99999999999999 is more than the 67108864 bytes a message may have"/,
      /Content-Length 99999999999999 is more than/,
    ],
    [
      'negative',
      frame('{}', 'Content-Length: -5\r\n\r\n'),
      /Content-Length \\"-5\\" is not a number/,
      /Content-Length "-5" is not a number/,
    ],
    [
      'not JSON',
      frame('{"jsonrpc": "2.0", "id": 7, "method": '),
      /"id":null,"error":\{"code":-32700,"message":"Parse error: the body is not JSON/,
      /bad frame \(Parse error: the body is not JSON .*\): "\{\\"jsonrpc\\": \\"2.0\\", \\"id\\": 7/,
    ],
    [
      'not UTF-8',
      Buffer.concat([Buffer.from('Content-Length: 4\r\n\r\n'), Buffer.from([0x22, 0xff, 0xfe, 0x22])]),
      /"code":-32700,"message":"Parse error: the body is not UTF-8/,
      /Parse error: the body is not UTF-8/,
    ],
    [
      'a batch',
      frame('[{"jsonrpc":"2.0","id":1,"method":"status"}]'),
      /"code":-32600,"message":"Invalid Request: batches \(a JSON array\) are not supported/,
      /batches/,
    ],
    [
      'no jsonrpc',
      frame('{"id":44,"method":"status"}'),
      /"id":44,"error":\{"code":-32600,"message":"Invalid Request: the message has no \\"jsonrpc\\": \\"2.0\\""/,
      /no "jsonrpc"/,
    ],
    [
      'two lengths',
      frame('{}', 'Content-Length: 2\r\nContent-Length: 3\r\n\r\n'),
      /Invalid Request: the frame has 2 different Content-Length headers/,
      /2 different Content-Length headers/,
    ],
    [
      'header without end',
      Buffer.from('Content-Length: 5\r\n' + 'X-Junk: y\r\n'.repeat(1000), 'latin1'),
      /Invalid Request: a header longer than 8192 bytes \(a header ends at its first blank line\)/,
      /a header longer than 8192 bytes/,
    ],
  ];
  let id = 1;
  for (const [name, bad, answer, logged] of cases) {
    const seen = w.out().length;
    w.child.stdin.write(Buffer.concat([bad, statusFrame(++id)]));
    await w.waitFor(new RegExp(`"id":${id},"result":\\{"pid":\\d+`));
    const answered = w.out().slice(seen);
    assert.match(answered, answer, name);
    assert.match(w.err(), logged, name);
  }
  // One byte at a time: the frames still come out right.
  const slow = Buffer.concat([frame('nope'), statusFrame(++id)]);
  for (const b of slow) w.child.stdin.write(Buffer.from([b]));
  await w.waitFor(new RegExp(`"id":${id},"result"`));
  assert.equal(w.child.exitCode, null, 'the worker is still running');
  w.child.stdin.end();
  assert.equal(await new Promise<number | null>((r) => w.child.once('exit', r)), 0);
});

test('framing fuzz (real worker): random bytes, then a request, is answered; memory stays bounded', async () => {
  const t = setup();
  const w = rawWorker(t.root);
  const r = rng(18);
  const valid = (id: number) => statusFrame(id);
  let id = 1000;
  let rss = 0;
  for (let round = 0; round < 40; round++) {
    const kind = round % 4;
    let junk: Buffer;
    if (kind === 0)
      junk = Buffer.from(Array.from({ length: 1 + Math.floor(r() * 20000) }, () => Math.floor(r() * 256)));
    else if (kind === 1) {
      const f = valid(1);
      junk = f.subarray(0, Math.floor(r() * f.length)); // a truncated frame: its body never completes …
      // … until spaces fill it
      junk = Buffer.concat([junk, Buffer.alloc(Math.max(0, f.length - junk.length + 64), 0x20)]);
    } else if (kind === 2) junk = frame('{}', `Content-Length: ${Math.floor(r() * 1e15)}\r\n\r\n`);
    else
      junk = Buffer.concat([
        Buffer.from('Content-Length: 3\r\n\r\n'),
        Buffer.from(Array.from({ length: 3 }, () => Math.floor(r() * 256))),
      ]);
    w.child.stdin.write(Buffer.concat([junk, valid(++id)]));
    await w.waitFor(new RegExp(`"id":${id},"result":\\{"pid":\\d+,"memory":\\{"rssMB":(\\d+)`), 15_000);
    rss = Math.max(
      rss,
      Number(new RegExp(`"id":${id},"result":\\{"pid":\\d+,"memory":\\{"rssMB":(\\d+)`).exec(w.out())![1]),
    );
  }
  assert.ok(rss < 400, `the worker's memory stayed bounded (${rss} MB)`);
  assert.equal(w.child.exitCode, null);
});
