// The @docdistill chat handler, driven as VS Code's Chat view drives it (request, context, stream,
// token), against a worker that streams chat/delta notifications. The Chat view itself cannot be
// opened in code-server 1.100 without a chat provider extension (see the e2e flow 07).
import { ChatRequestTurn, ChatResponseMarkdownPart, ChatResponseTurn } from '../helpers/fakeVscode';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type * as vscode from 'vscode';
import type * as P from '../../../src/protocol';
import { historyOf, makeChatHandler } from '../../../src/host/chatParticipant';
import type { DocDistill } from '../../../src/host/docdistill';

function setup(opts: { adapters?: Partial<P.AdapterSummary>[] } = {}) {
  const calls: P.ChatParams[] = [];
  const worker = Object.assign(new EventEmitter(), {
    async request(_type: unknown, p: P.ChatParams, signal?: AbortSignal) {
      calls.push(p);
      for (const piece of [`${p.mode} `, 'answer']) {
        if (signal?.aborted) break;
        await new Promise((r) => setTimeout(r, 1));
        worker.emit('chatDelta', { streamId: p.streamId, text: piece });
      }
      return { text: `${p.mode} answer`, finishReason: 'stop', tokens: 2, ms: 1 };
    },
  });
  const dd = {
    root: '/ws',
    adapters: opts.adapters ?? [{ name: 'docs', active: true, sources: ['docs/a.md', 'docs/b.md'] }],
    client: async () => worker,
    refreshAdapters: async () => {},
  } as unknown as DocDistill;
  const out: string[] = [];
  const refs: string[] = [];
  const stream = {
    markdown: (s: string) => void out.push(s),
    reference: (u: { fsPath: string }) => void refs.push(u.fsPath),
    progress: (s: string) => void out.push(`[progress ${s}]`),
    button: (b: { title: string }) => void out.push(`[button ${b.title}]`),
  } as unknown as vscode.ChatResponseStream;
  const token = {
    isCancellationRequested: false,
    onCancellationRequested: () => ({ dispose() {} }),
  } as unknown as vscode.CancellationToken;
  const handler = makeChatHandler(dd);
  const ask = (prompt: string, command?: string, history: unknown[] = []) =>
    handler({ prompt, command } as vscode.ChatRequest, { history } as unknown as vscode.ChatContext, stream, token);
  return { ask, out, refs, calls, worker };
}

test('@docdistill streams the active student and lists the docs it was distilled from', async () => {
  const s = setup();
  const r = await s.ask('Who is Kest?');
  assert.deepEqual(s.refs, ['/ws/docs/a.md', '/ws/docs/b.md']);
  assert.deepEqual(
    s.calls.map((c) => [c.mode, c.adapter, c.messages.at(-1)!.content]),
    [['student', 'docs', 'Who is Kest?']],
  );
  assert.equal(
    s.out.filter((x) => !x.startsWith('[')).join(''),
    'student answer',
    'the answer arrives as streamed pieces',
  );
  assert.ok(s.out.length >= 3, 'more than one streamed piece');
  assert.deepEqual((r as { metadata: unknown }).metadata, { adapter: 'docs', modes: ['student'] });
  assert.equal(s.worker.listenerCount('chatDelta'), 0, 'no listener left behind');
});

test('/compare asks base, student and teacher in turn, each under its label; /teacher asks the teacher only', async () => {
  const s = setup();
  await s.ask('Who is Kest?', 'compare');
  assert.deepEqual(
    s.calls.map((c) => c.mode),
    ['base', 'student', 'teacher'],
  );
  const text = s.out.join('');
  assert.match(
    text,
    /\*\*Base model \(no docs\)\*\*\n\nbase answer\n\n\*\*Student \(docs, no docs\)\*\*\n\nstudent answer\n\n\*\*Teacher \(docs in the prompt\)\*\*\n\nteacher answer/,
  );
  const t = setup();
  await t.ask('Who is Kest?', 'teacher');
  assert.deepEqual(
    t.calls.map((c) => c.mode),
    ['teacher'],
  );
});

test('without an adapter the student is not asked; the reply offers to distill', async () => {
  const s = setup({ adapters: [] });
  await s.ask('Who is Kest?');
  assert.equal(s.calls.length, 0);
  assert.ok(
    s.out.some((x) => x === '[button Distill Docs Folder]'),
    s.out.join('|'),
  );
});

test('earlier turns become the conversation history', () => {
  const h = historyOf({
    history: [new ChatRequestTurn('Who is Kest?'), new ChatResponseTurn([new ChatResponseMarkdownPart('A potter.')])],
  } as unknown as vscode.ChatContext);
  assert.deepEqual(h, [
    { role: 'user', content: 'Who is Kest?' },
    { role: 'assistant', content: 'A potter.' },
  ]);
});
