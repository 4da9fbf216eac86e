// The chat prompt of the worker is the distillation's: the teacher in chat sees the document as the
// teacher of the run saw it, under the run's prompt settings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chatMessages, DEFAULT_PROMPTS, teacherMessages, type PromptSettings } from '../../../src/pipeline/prompts';
import { adapterPrompts, type AdapterInfo } from '../../../src/pipeline/adapters';

const custom: PromptSettings = {
  ...DEFAULT_PROMPTS,
  system: 'You are the archive.',
  documentBlock: 'From the archive:\n{doc}\n---\n',
};
const doc = '  Blenoubun plays the bassoon.\n';
const q = 'What does Blenoubun play?';

test("a one-question chat with the teacher is exactly the distillation's teacher prompt", () => {
  for (const p of [DEFAULT_PROMPTS, custom]) {
    assert.deepEqual(chatMessages([{ role: 'user', content: q }], p, doc), teacherMessages(doc, q, p));
    // Without a document (base model, student): the run's system prompt and the question as asked.
    assert.deepEqual(chatMessages([{ role: 'user', content: q }], p), [
      { role: 'system', content: p.system },
      { role: 'user', content: q },
    ]);
  }
  // The document is in the teacher's prompt, under the run's own block.
  assert.match(
    chatMessages([{ role: 'user', content: q }], custom, doc)[1]!.content,
    /^From the archive:\nBlenoubun plays the bassoon\.\n---\nQuestion: /,
  );
});

test('a conversation keeps its own system prompt and turns; the document goes before the first question only', () => {
  const conv = [
    { role: 'system' as const, content: 'Be brief.' },
    { role: 'user' as const, content: q },
    { role: 'assistant' as const, content: 'The bassoon.' },
    { role: 'user' as const, content: 'And the colour?' },
  ];
  const out = chatMessages(conv, custom, doc);
  assert.equal(out.length, 4);
  assert.equal(out[0]!.content, 'Be brief.');
  assert.equal(out[1]!.content, teacherMessages(doc, q, custom)[1]!.content);
  assert.deepEqual(out.slice(2), conv.slice(2));
  assert.equal(conv[1]!.content, q, 'the request is not changed in place');
  // No document text (no sources): the question as it is.
  assert.equal(chatMessages(conv, custom, '')[1]!.content, q);
});

test("an adapter's prompts are the ones it was trained with, defaults for what its record leaves out", () => {
  assert.deepEqual(adapterPrompts(undefined), DEFAULT_PROMPTS);
  assert.deepEqual(adapterPrompts({ settings: {} } as unknown as AdapterInfo), DEFAULT_PROMPTS);
  assert.deepEqual(adapterPrompts({ settings: { prompts: custom } } as unknown as AdapterInfo), custom);
});
