// A model whose chat template never ends (issue 18, item 4), in a real worker process: the chat
// request fails with the template's file named, and `status` is answered meanwhile and after.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as P from '../../../src/protocol';
import { WorkerClient } from '../../../src/host/workerClient';

const repo = resolve(__dirname, '..', '..', '..');
const root = mkdtempSync(join(tmpdir(), 'dd-worker-template-'));
let c: WorkerClient | undefined;
after(async () => {
  await c?.dispose();
  rmSync(root, { recursive: true, force: true });
});

test('a chat template that loops for ever: the chat fails naming tokenizer_config.json, status is answered', async () => {
  const model = join(root, 'model');
  cpSync(join(repo, 'media', 'demo-model'), model, { recursive: true });
  const cfgPath = join(model, 'tokenizer_config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
  writeFileSync(
    cfgPath,
    JSON.stringify({
      ...cfg,
      chat_template: '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}',
    }),
  );
  const ws = join(root, 'ws');
  cpSync(
    join(repo, 'examples', 'docs', readdirSync(join(repo, 'examples', 'docs')).sort()[0]!),
    join(ws, 'docs', 'a.md'),
  );
  c = new WorkerClient({
    workerPath: join(repo, 'dist', 'worker.js'),
    init: { workspaceRoot: ws, modelDir: model, device: 'cpu', threads: 1 },
    backoffMs: 100,
  });
  await c.start();
  const t0 = Date.now();
  const chat = c.request(P.Chat.type, {
    streamId: 's1',
    messages: [{ role: 'user', content: 'hi' }],
    mode: 'base',
    maxTokens: 4,
  });
  const status = c.request(P.Status.type, undefined);
  await assert.rejects(chat, (e: Error) => {
    assert.match(
      e.message,
      /tokenizer_config\.json: the chat template was stopped: (it took more than \d+ evaluation steps|it ran for more than 2 s)/,
    );
    return true;
  });
  assert.equal((await status).pid, c.pid);
  assert.ok(Date.now() - t0 < 15_000, `answered after ${Date.now() - t0} ms`);
  assert.equal((await c.request(P.Status.type, undefined)).pid, c.pid, 'the worker keeps serving');
});
