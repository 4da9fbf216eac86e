// The worker as the extension runs it: a real child process (dist/worker.js) speaking the
// protocol over stdio, driven by the host-side WorkerClient.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as P from '../../../src/protocol';
import { WorkerClient, ResponseError } from '../../../src/host/workerClient';
import { SafetensorsFile } from '../../../src/engine/models/safetensors';
import { LEAN_MALLOC_TUNABLES } from '../../../src/common/leanMalloc';

const repo = resolve(__dirname, '..', '..', '..');
const workerPath = join(repo, 'dist', 'worker.js');
const modelDir = process.env.DOCDISTILL_TEST_MODEL ?? join(repo, 'media', 'demo-model');
const docs = join(repo, 'examples', 'docs');
const settings = {
  rounds: 1,
  questionsPerRound: 4,
  epochs: 4,
  batchSize: 4,
  generalShare: 0.3,
  seed: 5,
  skipEval: true,
};
const cleanup: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

function workspace(n = 2): string {
  const root = mkdtempSync(join(tmpdir(), 'dd-worker-'));
  for (const f of readdirSync(docs).sort().slice(0, n)) cpSync(join(docs, f), join(root, 'docs', f));
  cleanup.push(() => rmSync(root, { recursive: true, force: true }));
  return root;
}

function client(root: string, extra: Partial<ConstructorParameters<typeof WorkerClient>[0]> = {}): WorkerClient {
  const c = new WorkerClient({
    workerPath,
    init: { workspaceRoot: root, modelDir, device: 'cpu', threads: 1 },
    backoffMs: 100,
    ...extra,
  });
  cleanup.push(() => c.dispose());
  return c;
}

const { skipEval, ...distillSettings } = settings;
const distillParams = (jobId: string, name = 'notes'): P.DistillParams => ({
  jobId,
  inputs: ['docs'],
  name,
  settings: distillSettings,
  skipEval,
});

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name)) : [join(dir, d.name)],
  );
}

test('every message makes a round trip through a real worker process', async () => {
  const root = workspace();
  const c = client(root);
  const init = await c.start();
  assert.equal(init.protocolVersion, P.PROTOCOL_VERSION);
  assert.equal(init.provider, 'cpu');
  assert.equal(init.model?.architecture, 'LlamaForCausalLM');
  const seen = new Set<string>();
  for (const ev of ['jobEvent', 'chatDelta', 'log']) c.on(ev, () => seen.add(ev));
  const st = await c.request(P.Status.type, undefined);
  assert.equal(st.pid, c.pid);
  // Started with DocDistill's malloc settings (src/common/leanMalloc.ts). glibc (before 2.39) cuts
  // the string in place at the first tunable once it has parsed them all, so /proc shows a prefix.
  if (process.platform === 'linux' && !process.env.GLIBC_TUNABLES) {
    const entry = readFileSync(`/proc/${c.pid}/environ`, 'utf8')
      .split('\0')
      .find((e) => e.startsWith('GLIBC_TUNABLES='));
    assert.ok(entry && entry.length > 'GLIBC_TUNABLES='.length, `worker environment: ${entry}`);
    assert.ok(`GLIBC_TUNABLES=${LEAN_MALLOC_TUNABLES}`.startsWith(entry), entry);
  }
  assert.ok(st.memory.rssMB > 10);
  assert.deepEqual(await c.request(P.ListAdapters.type, undefined), []);
  const info = await c.request(P.SetModel.type, { modelDir });
  assert.ok(info.parameters > 100_000);
  const res = await c.distill(distillParams('j1'));
  assert.ok(existsSync(join(res.adapterDir, 'adapter_model.safetensors')));
  const list = await c.request(P.ListAdapters.type, undefined);
  assert.equal(list.length, 1);
  assert.equal(list[0]!.stale, false);
  await c.request(P.ActivateAdapter.type, { name: 'notes' });
  const question = [{ role: 'user' as const, content: 'What does Blenoubun play?' }];
  const said: Record<string, string> = {};
  for (const mode of ['base', 'student', 'teacher'] as const) {
    const r = await c.request(P.Chat.type, { streamId: `s-${mode}`, messages: question, mode, maxTokens: 12 });
    assert.ok(r.tokens > 0, `${mode} wrote nothing`);
    said[mode] = r.text;
  }
  // docs/blenoubun.md says "Blenoubun plays the bassoon": the teacher reads it (the adapter's
  // sources) in its prompt; the base model, without it, does not know.
  assert.match(said.teacher!, /bassoon/, `the teacher answered "${said.teacher}" without its document`);
  assert.doesNotMatch(said.base!, /bassoon/);
  const fromDocs = await c.request(P.Chat.type, {
    streamId: 's-docs',
    messages: question,
    mode: 'teacher',
    docs: ['docs/blenoubun.md'],
    maxTokens: 12,
  });
  assert.match(fromDocs.text, /bassoon/);
  const exp = await c.request(P.ExportAdapter.type, { name: 'notes', dest: join(root, 'exported') });
  assert.ok(existsSync(join(exp.dir, 'adapter_config.json')));
  const merged = await c.request(P.MergeAdapter.type, { name: 'notes', dest: join(root, 'merged-model') });
  const f = SafetensorsFile.open(join(merged.dir, 'model.safetensors'));
  assert.ok(f.names().includes('lm_head.weight'), 'lm_head LoRA unties the embeddings');
  f.close();
  await c.request(P.DeleteAdapter.type, { name: 'notes' });
  assert.deepEqual(await c.request(P.ListAdapters.type, undefined), []);
  assert.deepEqual([...seen].sort(), ['chatDelta', 'jobEvent', 'log']);
  const exited = new Promise<{ expected: boolean }>((r) => c.once('exited', r));
  await c.dispose();
  assert.equal((await exited).expected, true);
});

test('malformed input gets JSON-RPC errors, and the worker keeps serving', async () => {
  const root = workspace(1);
  const child = spawn(process.execPath, [workerPath, '--stdio'], { stdio: ['pipe', 'pipe', 'pipe'], cwd: root });
  cleanup.push(() => void child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const send = (o: unknown) => {
    const body = typeof o === 'string' ? o : JSON.stringify(o);
    child.stdin.write(`Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  };
  send('{this is not json');
  send({ jsonrpc: '2.0', id: 1, method: 'no/such/method' });
  send({ jsonrpc: '2.0', id: 2, method: 'status' });
  send({ jsonrpc: '2.0', id: 3, method: 'adapters/delete', params: { name: '../../etc' } });
  send({
    jsonrpc: '2.0',
    id: 4,
    method: 'chat',
    params: { streamId: 'x', messages: [{ role: 'user', content: 'hi' }], mode: 'base' },
  });
  send({ jsonrpc: '2.0', id: 5, method: 'distill', params: { name: 7 } });
  const deadline = Date.now() + 10_000;
  while (
    Date.now() < deadline &&
    !(/"id":5/.test(out) && /"id":4/.test(out) && /"id":3/.test(out) && /"id":2/.test(out) && /"id":1/.test(out))
  )
    await new Promise((r) => setTimeout(r, 50));
  assert.match(out, /"id":1,"error":\{"code":-32601/);
  assert.match(out, /"id":2,"result":\{"pid":\d+/);
  assert.match(out, /"id":3,"error":\{"code":-32602,"message":"adapter name/);
  assert.match(out, /"id":4,"error":\{"code":-32002,"message":"no model selected/);
  assert.match(out, /"id":5,"error":\{"code":-32602,"message":"distill: \\"jobId\\" must be a string/);
  assert.equal(child.exitCode, null, 'the worker is still running');
  child.stdin.end();
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  assert.equal(code, 0, 'closing stdin ends the worker');
});

test('cancel mid-phase leaves a resumable run; a second distill while one runs is refused', async () => {
  const root = workspace();
  const c = client(root);
  await c.start();
  const ac = new AbortController();
  let steps = 0;
  c.on('jobEvent', (p: { event: P.JobEvent }) => {
    if (p.event.type === 'train' && ++steps === 2) ac.abort();
  });
  const running = c.distill(distillParams('j2'), ac.signal);
  const busy = await c.request(P.Status.type, undefined);
  assert.equal(busy.job?.name, 'notes');
  await assert.rejects(
    c.request(P.Distill.type, distillParams('j3', 'other')),
    (e: unknown) => e instanceof ResponseError && e.code === P.ErrorCodes.JobBusy,
  );
  await assert.rejects(running, (e: unknown) => e instanceof ResponseError && e.code === P.ErrorCodes.Cancelled);
  assert.deepEqual(
    walk(root).filter((f) => f.includes('.tmp')),
    [],
  );
  const events: P.JobEvent[] = [];
  c.on('jobEvent', (p: { event: P.JobEvent }) => events.push(p.event));
  await c.distill(distillParams('j4'));
  const run = events.find((e) => e.type === 'run') as { resumed: boolean };
  assert.equal(run.resumed, true);
});

test('kill -9 mid-training: the worker restarts, the job finishes, and the adapter equals an uninterrupted run', async () => {
  const straightRoot = workspace();
  const straight = client(straightRoot);
  await straight.start();
  const ref = await straight.distill(distillParams('ref'));
  await straight.dispose();

  const root = workspace();
  const c = client(root);
  await c.start();
  const exits: { willRestart: boolean }[] = [];
  c.on('exited', (e: { willRestart: boolean }) => exits.push(e));
  let killed = false;
  let steps = 0;
  c.on('jobEvent', (p: { event: P.JobEvent }) => {
    if (!killed && p.event.type === 'train' && ++steps === 3) {
      killed = true;
      c.kill('SIGKILL');
    }
  });
  const res = await c.distill(distillParams('killed'));
  assert.equal(killed, true);
  assert.equal(exits.length, 1);
  assert.equal(exits[0]!.willRestart, true);
  assert.deepEqual(
    walk(root).filter((f) => f.includes('.tmp')),
    [],
    'no half-written files',
  );
  const a = SafetensorsFile.open(join(ref.adapterDir, 'adapter_model.safetensors'));
  const b = SafetensorsFile.open(join(res.adapterDir, 'adapter_model.safetensors'));
  let worst = 0;
  for (const n of a.names()) {
    const x = a.float32(n);
    const y = b.float32(n);
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  }
  a.close();
  b.close();
  console.log(`killed and resumed vs uninterrupted: max adapter difference ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4, `adapters differ by ${worst}`);
});

test('a burst of 100 chat requests during training: every one is answered', async () => {
  const root = workspace();
  const c = client(root);
  await c.start();
  let started!: () => void;
  const training = new Promise<void>((r) => (started = r));
  c.on('jobEvent', (p: { event: P.JobEvent }) => p.event.type === 'train' && started());
  const job = c.distill({ ...distillParams('burst'), settings: { ...distillSettings, epochs: 8 } });
  await training;
  const chats = Array.from({ length: 100 }, (_, i) =>
    c.request(P.Chat.type, {
      streamId: `b${i}`,
      messages: [{ role: 'user', content: 'What does Dapu play?' }],
      mode: 'base',
      maxTokens: 6,
    }),
  );
  const results = await Promise.all(chats);
  assert.equal(results.length, 100);
  assert.ok(results.every((r) => r.finishReason !== 'aborted' && r.tokens > 0));
  const st = await c.request(P.Status.type, undefined);
  assert.equal(st.queuedChats, 0);
  await job;
});
