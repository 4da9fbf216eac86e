// The demo model's training data: the task mixes, and what each task teaches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Tokenizer } from '../../../src/engine/tokenizer';
import {
  DemoData,
  QUOTE_ONE_REQUEST,
  REPEAT_REQUEST,
  demoConfig,
  demoWeightsFromFolder,
  trainDemoModel,
} from '../../../src/demo/trainModel';
import { Backend } from '../../../src/engine/backend';
import { CausalLM } from '../../../src/engine/models/model';
import { ANSWERS, NOT_SAID, TEMPLATES, makeVocab, parseQuestion } from '../../../src/demo/world';
import { saysDontKnow } from '../../../src/pipeline/prompts';
import { Rng } from '../../../src/common/rng';

const modelDir = join(resolve(__dirname, '..', '..', '..'), 'media', 'demo-model');

type Kind = 'doc' | 'answer' | 'absent' | 'write' | 'closed' | 'general';

/** The demo training data on task mix `mix`, every subject allowed. */
async function demoData(mix: keyof typeof DemoData.MIXES): Promise<{ tok: Tokenizer; data: DemoData }> {
  const tok = await Tokenizer.fromFolder(modelDir);
  const data = new DemoData(tok, makeVocab(1));
  data.allSubjects = true;
  data.mix = mix;
  return { tok, data };
}

/**
 * A sample's document, question and answer, when it has them. The demo tokenizer decodes word by
 * word ("## Vidax" comes back as "# # Vidax", without line breaks); punctuation is joined back.
 */
function parts(tok: Tokenizer, ids: number[]): { doc: string; question: string; answer: string } | undefined {
  const text = tok.decode(ids, { skipSpecialTokens: false }).replace(/\s+([:?.,])/g, '$1');
  const m = /Document:\s*([\s\S]*?)\s*Question:\s*(.*?)\s*<\|im_end\|>[\s\S]*assistant\s*(.*?)\s*<\|im_end\|>/.exec(
    text,
  );
  return m ? { doc: m[1]!, question: m[2]!, answer: m[3]! } : undefined;
}

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
  const { tok, data } = await demoData(7);
  const rng = new Rng(11);
  let pairs = 0;
  for (let i = 0; i < 600 && pairs < 40; i++) {
    const first = data.sample(rng);
    const a = parts(tok, first.ids);
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
    const b = parts(tok, data.sample(rng).ids)!;
    assert.equal(b.doc, a.doc);
    const qb = parseQuestion(b.question)!;
    assert.equal(qb.entity, q.entity);
    assert.notEqual(qb.relation, q.relation);
    assert.ok(!saysDontKnow(b.answer), b.answer);
    pairs++;
  }
  assert.equal(pairs, 40);
});

test('demo-model train --from with more layers grows the model: the new layers start as the identity', async () => {
  const be = await Backend.create({ device: 'cpu', threads: 1 });
  try {
    const base = await CausalLM.load(modelDir, be, { cacheDir: false });
    const tok = await Tokenizer.fromFolder(modelDir);
    const c = base.config;
    const shape = {
      hidden: c.hiddenSize,
      layers: c.numLayers + 2,
      heads: c.numHeads,
      intermediate: c.intermediateSize,
    };
    const cfg = demoConfig(c.vocabSize, c.eosTokenIds[0]!, c.padTokenId!, shape);
    const w = demoWeightsFromFolder(modelDir, cfg, new Rng(3));
    // The grown layers' output projections are zero; their other weights are a fresh initialisation.
    assert.ok(w.t.get('model.layers.0.self_attn.o_proj.weight')!.data.every((x) => x === 0));
    assert.ok(w.t.get('model.layers.1.mlp.down_proj.weight')!.data.every((x) => x === 0));
    assert.ok(w.t.get('model.layers.1.mlp.up_proj.weight')!.data.some((x) => x !== 0));
    const grown = CausalLM.fromWeights(cfg, w, be, { id: 'grown', tokenizer: tok });
    const ids = [tok.encode('# Vreruq\n\nVreruq has a pet named Toskyl. Vreruq plays the harp.')];
    const [a, b] = [(await base.score(ids))[0]!, (await grown.score(ids))[0]!];
    assert.equal(a.length, b.length);
    for (let i = 1; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-4, `token ${i}: ${a[i]} vs ${b[i]}`);
    // Fewer layers than the folder has is refused with the reason.
    const small = demoConfig(c.vocabSize, c.eosTokenIds[0]!, c.padTokenId!, { ...shape, layers: c.numLayers - 1 });
    assert.throws(() => demoWeightsFromFolder(modelDir, small, new Rng(3)), /has 4 layers, more than the 3 asked for/);
  } finally {
    await be.dispose();
  }
});

test('mix 10: in a document about several people, everyone has the relation asked, each with another value', async () => {
  const { tok, data } = await demoData(10);
  const rng = new Rng(5);
  let multi = 0;
  let paired = false; // the answered half of an abstention's pair keeps that document
  for (let i = 0; i < 1500 && multi < 60; i++) {
    const m = parts(tok, data.sample(rng).ids);
    const wasPaired = paired;
    paired = !!m && m.answer.includes('does not say');
    if (!m || paired || wasPaired || saysDontKnow(m.answer)) continue;
    const q = parseQuestion(m.question);
    const sections = m.doc.split(/# # /).filter(Boolean);
    if (!q || sections.length < 2) continue;
    multi++;
    const values = sections.map((sec) => {
      const name = sec.trim().split(' ')[0]!;
      for (const t of TEMPLATES[q.relation]) {
        const re = new RegExp(t.replace(/[.]/g, '\\.').replace('{N}', name).replace('{V}', '([A-Za-z0-9]+)'));
        const v = re.exec(sec.replace(/\s+/g, ' '));
        if (v) return v[1]!;
      }
      return undefined;
    });
    assert.ok(values.every(Boolean), `every section says the ${q.relation}: ${m.doc}`);
    const names = sections.map((sec) => sec.trim().split(' ')[0]!);
    const own = values[names.indexOf(q.entity)];
    assert.ok(own && m.answer.includes(own), `${m.answer} gives ${q.entity}'s value`);
    assert.equal(values.filter((v) => v === own).length, 1, `only ${q.entity} has ${own}: ${values.join(', ')}`);
  }
  assert.equal(multi, 60);
});

test("mixes 11–15: two people at most; mix 12 writes every fact in its answer form; mixes 13–15 quote a document word for word, 15 one person's section too", async () => {
  for (const mix of [11, 12, 13, 14, 15] as const) {
    const { tok, data } = await demoData(mix);
    const rng = new Rng(11);
    let quotes = 0;
    let quoteOnes = 0;
    let canonicalChecked = 0;
    const n = 1000;
    for (let i = 0; i < n; i++) {
      const m = parts(tok, data.sample(rng).ids);
      if (!m) continue;
      const sections = m.doc.split(/# # /).filter(Boolean);
      assert.ok(sections.length <= 2, `mix ${mix}: at most two people, got ${sections.length}: ${m.doc}`);
      if (m.question === REPEAT_REQUEST) {
        quotes++;
        assert.equal(m.answer, m.doc, `mix ${mix}: the quote is the document`);
      }
      const one = new RegExp('^' + QUOTE_ONE_REQUEST.replace('{N}', '([A-Z][a-z]+)').replace('.', '\\.') + '$').exec(
        m.question,
      );
      if (one) {
        quoteOnes++;
        assert.equal(sections.length, 2, `mix ${mix}: a section is quoted from a document of two`);
        const own = sections.find((sec) => sec.trim().split(' ')[0] === one[1]);
        assert.ok(own, `mix ${mix}: ${one[1]} has a section`);
        assert.equal(m.answer, `# # ${own.trim()}`, `mix ${mix}: the quote is ${one[1]}'s section`);
      }
      if (mix === 12 && sections.length === 2 && m.question !== REPEAT_REQUEST) {
        const canonical = new Set(Object.values(TEMPLATES).map((ts) => ts[0]!.replace(/\{N\}|\{V\}/g, '#')));
        for (const sec of sections) {
          const [name, ...rest] = sec.trim().split(' ');
          for (const sentence of rest.join(' ').split(/(?<=\.) /)) {
            const form = sentence
              .trim()
              .replace(new RegExp(`\\b${name}\\b`), '#')
              .replace(/ [A-Za-z0-9]+\.$| [A-Za-z0-9]+ best\.$/, (x) => (x.endsWith('best.') ? ' # best.' : ' #.'));
            assert.ok(canonical.has(form), `mix 12: "${sentence}" is in its first template`);
            canonicalChecked++;
          }
        }
      }
    }
    if (mix === 12) assert.ok(canonicalChecked > 100, `mix 12: ${canonicalChecked} sentences checked`);
    // (The answered half of an abstention's pair is an extra sample, so every share comes out a little lower.)
    const mixShares = new Map<string, unknown>(Object.entries(DemoData.MIXES[mix]));
    for (const [task, count] of [
      ['repeat', quotes],
      ['quoteOne', quoteOnes],
    ] as const) {
      const share = Number(mixShares.get(task) ?? 0) / 100;
      assert.ok(
        count / n > 0.85 * share - 0.01 && count / n < share + 0.03,
        `mix ${mix}: ${count} ${task} samples in ${n}, want about ${share}`,
      );
    }
  }
});

test('mixes 16–21, drills for the binding: every answer about one of two people who both have the relation asked; 17–21 train on the answers alone, 19 asks six questions in one conversation, 20 and 21 predict the repeated names of a document, 21 quotes one person', async () => {
  for (const mix of [16, 17, 18, 19, 20, 21] as const) {
    const { tok, data } = await demoData(mix);
    const rng = new Rng(16);
    const n = 400;
    let names = 0;
    let quoteOnes = 0;
    for (let i = 0; i < n; i++) {
      const s = data.sample(rng);
      assert.equal(s.weights.length, s.ids.length - 1, `mix ${mix}: a weight per predicted token`);
      const text = tok.decode(s.ids, { skipSpecialTokens: false }).replace(/\s+([:?.,])/g, '$1');
      if (!text.includes('<|im_start|>')) {
        // Mixes 20 and 21's plain documents: a loss on each name after its first mention, nothing else.
        assert.ok(mix >= 20, `mix ${mix}: only chat samples`);
        names++;
        const seen = new Set<number>();
        const heads = [...text.matchAll(/# # ([A-Z][a-z]+)/g)].map((x) => tok.tokenToId(x[1]!)!);
        assert.equal(heads.length, 2, `mix 20: a document about two people: ${text}`);
        s.ids.slice(1).forEach((t, j) => {
          const repeated = heads.includes(t) && seen.has(t);
          if (heads.includes(t)) seen.add(t);
          assert.equal(s.weights[j], repeated ? 1 : 0, `mix 20: token ${j + 1} (${tok.decode([t])}) weight`);
        });
        continue;
      }
      const m = parts(tok, s.ids);
      assert.ok(m, `mix ${mix}: a question about a document`);
      const sections = m.doc.split(/# # /).filter(Boolean);
      assert.equal(sections.length, 2, `mix ${mix}: a document about two people`);
      const one = new RegExp('^' + QUOTE_ONE_REQUEST.replace('{N}', '([A-Z][a-z]+)').replace('.', '\\.') + '$').exec(
        m.question,
      );
      if (one) {
        assert.equal(mix, 21, `mix ${mix}: no quoting`);
        quoteOnes++;
        const own = sections.find((sec) => sec.trim().split(' ')[0] === one[1]);
        assert.equal(m.answer, `# # ${own?.trim()}`, `mix 21: the quote is ${one[1]}'s section`);
        assert.ok(
          s.weights.every((w) => w === 0 || w >= 2),
          'mix 21: only the quote has a loss',
        );
        continue;
      }
      // Each answer ("X lives in the town of V.") is X's, and (16–18, 20) the other person has a
      // value for that relation too, another one.
      const turns = [
        ...text.matchAll(/Question:\s*(.*?)\s*<\|im_end\|>\s*<\|im_start\|>\s*assistant\s*(.*?)\s*<\|im_end\|>/g),
      ];
      assert.equal(turns.length, mix === 19 ? 6 : 1, `mix ${mix}: questions in the conversation`);
      for (const [, , answer] of turns) {
        const [who] = answer!.split(' ');
        const own = sections.find((sec) => sec.trim().split(' ')[0] === who);
        const other = sections.find((sec) => sec !== own)!;
        assert.ok(own, `mix ${mix}: ${who} has a section`);
        const value = /([A-Za-z0-9]+)(?: best)?\.$/.exec(answer!)![1]!;
        assert.ok(own.split(/[ .]/).includes(value), `mix ${mix}: "${answer}" is in ${who}'s section`);
        if (mix !== 19) {
          const rel = Object.entries(ANSWERS).find(([, a]) =>
            answer!.startsWith(a.split('{V}')[0]!.replace('{N}', who!)),
          );
          assert.ok(rel, `mix ${mix}: "${answer}" has an answer form`);
          const others = TEMPLATES[rel[0] as keyof typeof TEMPLATES].map((t) =>
            t.split('{V}')[0]!.split('{N}').pop()!.trim(),
          );
          assert.ok(
            others.some((cue) => other.includes(cue)),
            `mix ${mix}: the other person has the ${rel[0]} too`,
          );
        }
      }
      // 17–21: no loss on the prompt, the answers weighted.
      const answerTokens = s.weights.filter((w) => w >= 2).length;
      assert.ok(answerTokens >= turns.length * 3, `mix ${mix}: answers are trained`);
      if (mix !== 16)
        assert.ok(
          s.weights.every((w) => w === 0 || w >= 2),
          `mix ${mix}: only answer tokens have a loss`,
        );
      else
        assert.ok(
          s.weights.some((w) => w === 1),
          'mix 16: the prompt has a loss',
        );
    }
    const shares = new Map<string, unknown>(Object.entries(DemoData.MIXES[mix]));
    for (const [task, count] of [
      ['names', names],
      ['quoteOne', quoteOnes],
    ] as const) {
      const share = Number(shares.get(task) ?? 0) / 100;
      assert.ok(
        Math.abs(count / n - share) < 0.07,
        `mix ${mix}: ${count} ${task} samples in ${n}, want about ${share}`,
      );
    }
  }
});

test("mixes 22 and 23, mix 10 for after a drill: every task of mix 10 trained on its answers alone, mix 20's name-tracking documents about 1–4 people; 23 writes and rephrases more questions", async () => {
  for (const mix of [22, 23] as const) {
    const { tok, data } = await demoData(mix);
    const want = DemoData.MIXES[mix];
    const rng = new Rng(22);
    const n = 1200;
    let names = 0;
    let chats = 0;
    let most = 0;
    let write = 0;
    let paraphrase = 0;
    for (let i = 0; i < n; i++) {
      const s = data.sample(rng);
      const text = tok.decode(s.ids, { skipSpecialTokens: false });
      if (!text.includes('<|im_start|>')) {
        names++;
        assert.ok(
          s.weights.every((w) => w === 0 || w === 1),
          'names: a loss on repeated names alone',
        );
        assert.ok(
          s.weights.some((w) => w === 1),
          'names: some name repeats',
        );
        continue;
      }
      chats++;
      if (/Write a question about this document/.test(text.replace(/\s+([.])/g, '$1'))) write++;
      if (/Rephrase this question/.test(text)) paraphrase++;
      const prompt = s.ids.lastIndexOf(tok.tokenToId('<|im_start|>')!);
      assert.ok(
        s.weights.slice(0, prompt).every((w) => w === 0),
        `mix ${mix}: no loss on the prompt`,
      );
      assert.ok(
        s.weights.some((w) => w >= 2),
        `mix ${mix}: the answer is trained`,
      );
      const m = parts(tok, s.ids);
      if (m) most = Math.max(most, m.doc.split(/# # /).filter(Boolean).length);
    }
    const near = (got: number, share: number, what: string, tol = 0.04) =>
      assert.ok(Math.abs(got / n - share / 100) < tol, `mix ${mix}: ${got} ${what} in ${n}, want about ${share} %`);
    near(names, want.names, 'name documents');
    // An absent-relation draw on a document with all eight relations falls through to writing a question.
    near(write, want.write + 2, 'questions written', 0.045);
    near(paraphrase, want.paraphrase, 'paraphrases', 0.025);
    assert.ok(chats > n * 0.75, `mix ${mix}: ${chats} chat samples`);
    assert.equal(most, 4, `mix ${mix}: documents of up to 4 people`);
  }
});

test('demo-model train --stop-at ends the run at that step of the --steps schedule and records the stage', async () => {
  const out = mkdtempSync(join(tmpdir(), 'dd-stop-'));
  try {
    await trainDemoModel({
      out,
      minutes: 5,
      steps: 50,
      stopAt: 3,
      warmup: 10,
      seed: 1,
      threads: 1,
      evalEvery: 1000,
      shape: { hidden: 32, layers: 1, heads: 2, intermediate: 64 },
      log: () => undefined,
    });
    const t = JSON.parse(readFileSync(join(out, 'training.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(t.steps, 3);
    assert.equal(t.scheduleSteps, 50);
    assert.equal(t.warmup, 10);
    assert.ok(existsSync(join(out, 'model.safetensors')), 'the model folder is written at the stop');
    assert.ok(!existsSync(join(out, '.checkpoint')), 'a finished stage leaves no checkpoint');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('the training stream resumes where a checkpoint left it, the pending half of a pair included', async () => {
  const { tok } = await demoData(7);
  const fresh = () => {
    const d = new DemoData(tok, makeVocab(1));
    d.allSubjects = true;
    d.mix = 7;
    return d;
  };
  const a = fresh();
  const rng = new Rng(3);
  // Run until a pair has been made and its answered half waits.
  for (let i = 0; i < 500 && !a.pendingSample; i++) a.sample(rng);
  assert.ok(a.pendingSample, 'a pending sample');
  // What the trainer's checkpoint keeps (state.json is JSON), then the next samples.
  const saved = JSON.parse(JSON.stringify({ rng: rng.state, pending: a.pendingSample })) as {
    rng: number;
    pending: typeof a.pendingSample;
  };
  const next = Array.from({ length: 20 }, () => a.sample(rng));
  const b = fresh();
  b.pendingSample = saved.pending;
  const rngB = new Rng(saved.rng);
  assert.deepEqual(
    Array.from({ length: 20 }, () => b.sample(rngB)),
    next,
  );
  // Without the pending sample the stream is one sample off.
  const c = fresh();
  const rngC = new Rng(saved.rng);
  assert.notDeepEqual(c.sample(rngC), next[0]);
});
