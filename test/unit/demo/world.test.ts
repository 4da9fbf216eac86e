// The demo model's training data: the task mixes, and what each task teaches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { Tokenizer } from '../../../src/engine/tokenizer';
import { DemoData } from '../../../src/demo/trainModel';
import { makeVocab } from '../../../src/demo/world';
import { Rng } from '../../../src/common/rng';

const modelDir = join(resolve(__dirname, '..', '..', '..'), 'media', 'demo-model');

type Kind = 'doc' | 'answer' | 'absent' | 'write' | 'closed' | 'general';

test('each task mix gives its shares of tasks; mix 2 teaches the teacher to abstain on what the document does not say', async () => {
  const tok = await Tokenizer.fromFolder(modelDir);
  const data = new DemoData(tok, makeVocab(1));
  data.allSubjects = true;
  for (const mix of [1, 2] as const) {
    data.mix = mix;
    const rng = new Rng(7);
    const n = 3000;
    const count: Record<Kind, number> = { doc: 0, answer: 0, absent: 0, write: 0, closed: 0, general: 0 };
    for (let i = 0; i < n; i++) {
      const text = tok.decode(data.sample(rng).ids, { skipSpecialTokens: false }).replace(/\s+([:?.])/g, '$1');
      const hasDoc = text.includes('Document:');
      const idk = /assistant\s*I do not know\./.test(text);
      let kind: Kind;
      if (!text.includes('<|im_start|>')) kind = 'doc';
      else if (hasDoc && text.includes('Question:')) kind = idk ? 'absent' : 'answer';
      else if (hasDoc) kind = 'write';
      else if (text.includes('Question:')) kind = 'closed';
      else kind = 'general';
      count[kind]++;
    }
    const want = DemoData.MIXES[mix];
    for (const k of Object.keys(count) as Kind[]) {
      // An absent-relation draw on a document with all eight relations falls through to writing a question.
      const tol = k === 'absent' || k === 'write' ? 0.04 : 0.025;
      assert.ok(
        Math.abs(count[k] / n - want[k] / 100) < tol,
        `mix ${mix}: ${k} ${(count[k] / n).toFixed(3)} vs ${want[k] / 100}`,
      );
    }
  }
});
