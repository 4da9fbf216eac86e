// The demo model's training data: the task mixes, and what each task teaches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { Tokenizer } from '../../../src/engine/tokenizer';
import { DemoData } from '../../../src/demo/trainModel';
import { ANSWERS, NOT_SAID, TEMPLATES, makeVocab, parseQuestion } from '../../../src/demo/world';
import { saysDontKnow } from '../../../src/pipeline/prompts';
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

test('mix 7: a question about a relation the document lacks is answered at the value, and paired with one the same document answers', async () => {
  const tok = await Tokenizer.fromFolder(modelDir);
  const data = new DemoData(tok, makeVocab(1));
  data.allSubjects = true;
  data.mix = 7;
  const rng = new Rng(11);
  const decode = (ids: number[]) => tok.decode(ids, { skipSpecialTokens: false }).replace(/\s+([:?.,])/g, '$1');
  const parts = (text: string) => {
    const m = /Document:\s*([\s\S]*?)\s*Question:\s*(.*?)\s*<\|im_end\|>[\s\S]*assistant\s*(.*?)\s*<\|im_end\|>/.exec(
      text,
    );
    return m ? { doc: m[1]!, question: m[2]!, answer: m[3]! } : undefined;
  };
  let pairs = 0;
  for (let i = 0; i < 600 && pairs < 40; i++) {
    const first = data.sample(rng);
    const a = parts(decode(first.ids));
    if (!a || !a.answer.includes('does not say')) continue;
    const q = parseQuestion(a.question)!;
    const form = ANSWERS[q.relation].slice(0, ANSWERS[q.relation].indexOf('{V}')).replace('{N}', q.entity).trim();
    assert.ok(saysDontKnow(a.answer), a.answer);
    assert.equal(a.answer.replace(/\s+-/, ' -'), `${form} ${NOT_SAID}`.replace(/\s+([.])/g, '$1'));
    // The document has no sentence of that relation (the words right before its value).
    for (const t of TEMPLATES[q.relation]) {
      const cue = t.slice(0, t.indexOf('{V}')).replace('{N}', q.entity).trim().split(' ').slice(-3).join(' ');
      assert.ok(!a.doc.includes(`${cue} `), `${cue} in ${a.doc}`);
    }
    // The deciding token (the "-" where the value would be) carries the key weight.
    const dash = tok.encode('-', { addSpecialTokens: false })[0]!;
    const at = first.ids.lastIndexOf(dash);
    assert.equal(first.weights[at - 1], DemoData.MIXES[7].key);
    // The next sample: the same document, a question it answers.
    const b = parts(decode(data.sample(rng).ids))!;
    assert.equal(b.doc, a.doc);
    const qb = parseQuestion(b.question)!;
    assert.equal(qb.entity, q.entity);
    assert.notEqual(qb.relation, q.relation);
    assert.ok(!saysDontKnow(b.answer), b.answer);
    pairs++;
  }
  assert.equal(pairs, 40);
});
