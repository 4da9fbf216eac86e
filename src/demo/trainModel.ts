// Trains the built-in demo model from scratch with DocDistill's own engine: a small Llama on the
// micro-world's tasks (read a document and answer; write a question about a document; say "I do
// not know" without one; write a question about anyone), with the next-token loss on every token
// and assistant tokens weighted double. Time-boxed, checkpointed (a killed run resumes), and
// evaluated per relation on held-out people as it goes.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Backend, type HostTensor } from '../engine/backend';
import { CausalLM } from '../engine/models/model';
import type { ModelConfig } from '../engine/models/config';
import type { WeightSource } from '../engine/models/weights';
import { writeJsonAtomic } from '../common/atomicFile';
import { saveModelFolder } from '../engine/models/save';
import { SafetensorsFile, writeSafetensors } from '../engine/models/safetensors';
import { Tokenizer } from '../engine/tokenizer';
import { FullTrainer, type LmSequence } from '../engine/train/full';
import { generate } from '../engine/generate';
import { isGrounded, wordSet } from '../pipeline/questions';
import {
  DEFAULT_PROMPTS,
  DONT_KNOW,
  generalQuestionMessages,
  paraphraseMessages,
  questionMessages,
  saysDontKnow,
  studentMessages,
  teacherMessages,
  type ChatMessage,
} from '../pipeline/prompts';
import { buildVocab, tokenizerConfigJson, tokenizerJson } from './tokenizer';
import { HELD_OUT_PEOPLE as HELD_OUT } from './examples';
import { DEMO_SETTINGS } from './demo';
import {
  QUESTIONS,
  RELATIONS,
  WHO_QUESTIONS,
  fill,
  notSaidAnswer,
  othersHave,
  absentRelations,
  answerFor,
  makeEntity,
  makeVocab,
  parseQuestion,
  question,
  renderDoc,
  renderPeopleDoc,
  personSection,
  type Entity,
  type Fact,
  type Relation,
  type WorldVocab,
} from './world';
import { Rng } from '../common/rng';

export interface DemoTrainOptions {
  out: string;
  minutes: number;
  /** A fixed number of steps instead of a time box (the time box still stops a run that overruns by 50 %). */
  steps?: number;
  /** From this step on, every name is also a training subject (phase 2, see DemoData.allSubjects). */
  allSubjectsFrom?: number;
  /** The task mix (DemoData.MIXES); 1 unless given. */
  mix?: keyof typeof DemoData.MIXES;
  /** Start from this demo model folder's weights (same seed, so the same vocabulary) instead of random ones. */
  from?: string;
  /** Peak learning rate (3e-3 from scratch). */
  lr?: number;
  /** Warmup steps (200 from scratch). */
  warmup?: number;
  /** End the run at this step (model folder written), the learning-rate schedule still that of `steps`. */
  stopAt?: number;
  seed: number;
  threads?: number;
  /** Evaluate every this many steps. */
  evalEvery?: number;
  /** The model's shape (DEMO_SHAPE, the built-in model's, unless given); a resumed or `from` run must match it. */
  shape?: DemoShape;
  log: (line: string) => void;
  signal?: AbortSignal;
}

export interface DemoShape {
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
}

export const DEMO_SHAPE: DemoShape = { hidden: 128, layers: 4, heads: 4, intermediate: 384 };

class MemWeights implements WeightSource {
  readonly t = new Map<string, { shape: number[]; data: Float32Array }>();
  has(n: string) {
    return this.t.has(n);
  }
  info(n: string) {
    return this.t.get(n)!;
  }
  float32(n: string) {
    return this.t.get(n)!.data;
  }
}

function initWeights(c: ModelConfig, rng: Rng): MemWeights {
  const w = new MemWeights();
  const normal = (n: number, std: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++)
      a[i] = std * Math.sqrt(-2 * Math.log(Math.max(rng.next(), 1e-12))) * Math.cos(2 * Math.PI * rng.next());
    return a;
  };
  const put = (name: string, shape: number[], std: number) =>
    w.t.set(name, {
      shape,
      data: std ? normal(shape[0]! * (shape[1] ?? 1), std) : new Float32Array(shape[0]!).fill(1),
    });
  const { hiddenSize: D, intermediateSize: I, numHeads: H, headDim: E, vocabSize: V } = c;
  const outStd = 0.02 / Math.sqrt(2 * c.numLayers);
  put('model.embed_tokens.weight', [V, D], 0.02);
  put('model.norm.weight', [D], 0);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    put(`${p}.input_layernorm.weight`, [D], 0);
    put(`${p}.post_attention_layernorm.weight`, [D], 0);
    put(`${p}.self_attn.q_proj.weight`, [H * E, D], 0.02);
    put(`${p}.self_attn.k_proj.weight`, [H * E, D], 0.02);
    put(`${p}.self_attn.v_proj.weight`, [H * E, D], 0.02);
    put(`${p}.self_attn.o_proj.weight`, [D, H * E], outStd);
    put(`${p}.mlp.gate_proj.weight`, [I, D], 0.02);
    put(`${p}.mlp.up_proj.weight`, [I, D], 0.02);
    put(`${p}.mlp.down_proj.weight`, [D, I], outStd);
  }
  return w;
}

/**
 * The weights of a demo model folder, checked against the configuration that the seed gives. A
 * shape with more layers than the folder's grows it: the new layers come first and start as the
 * identity (their output projections zero), so the model computes what it did, and the new layers
 * have room for features the old ones would use (which person a sentence is about).
 */
export function demoWeightsFromFolder(dir: string, c: ModelConfig, rng: Rng): MemWeights {
  const w = new MemWeights();
  const f = SafetensorsFile.open(join(dir, 'model.safetensors'));
  try {
    const init = initWeights(c, rng);
    const had = new Set(
      f
        .names()
        .map((n) => /^model\.layers\.(\d+)\./.exec(n)?.[1])
        .filter(Boolean),
    ).size;
    const grow = c.numLayers - had;
    if (grow < 0) throw new Error(`--from ${dir}: it has ${had} layers, more than the ${c.numLayers} asked for`);
    for (const [name, t] of init.t) {
      const layer = /^model\.layers\.(\d+)\.(.*)$/.exec(name);
      if (layer && Number(layer[1]) < grow) {
        const zero = /(o_proj|down_proj)\.weight$/.test(layer[2]!);
        w.t.set(name, zero ? { shape: t.shape, data: new Float32Array(t.data.length) } : t);
        continue;
      }
      const from = layer ? `model.layers.${Number(layer[1]) - grow}.${layer[2]}` : name;
      const got = f.float32(from);
      if (got.length !== t.data.length)
        throw new Error(
          `--from ${dir}: ${name} has ${got.length} values, this seed's model needs ${t.data.length} (train with the seed that made it)`,
        );
      w.t.set(name, { shape: t.shape, data: Float32Array.from(got) });
    }
  } finally {
    f.close();
  }
  return w;
}

/** Builds one training sequence: token ids and per-token loss weights (assistant tokens ×2). */
/** Task mix 10 (see DemoData.MIXES), which mixes 11 and 12 vary. */
const MIX_10 = {
  doc: 6,
  answer: 44,
  absent: 10,
  write: 8,
  paraphrase: 2,
  closed: 8,
  general: 2,
  multi: 0.85,
  key: 8,
  who: 20,
  pair: true,
  notSaid: true,
  collide: true,
} as const;

/** Task mix 13: mix 11 with a fifth of the samples quoting a document; mixes 14 and 15 vary it. */
const MIX_13 = {
  ...MIX_10,
  people: 2,
  doc: 4,
  answer: 36,
  absent: 8,
  write: 6,
  closed: 6,
  who: 16,
  repeat: 20,
} as const;

/** Whether `o` has `f`'s relation with another value than `f`'s. */
const hasOtherValue = (o: Entity, f: Fact): boolean =>
  o.facts.some((g) => g.relation === f.relation && g.value !== f.value);

/** Mix 16, a drill for tying a value to its person; 17–20 vary it (see DemoData.MIXES). */
const DRILL = {
  doc: 0,
  answer: 100,
  absent: 0,
  write: 0,
  paraphrase: 0,
  closed: 0,
  general: 0,
  multi: 1,
  key: 8,
  people: 2,
  collide: true,
} as const;

/** Mix 17: mix 16 with a loss on the answers alone. */
const DRILL_17 = { ...DRILL, promptWeight: 0 } as const;

export class DemoData {
  private readonly imEnd: number;

  constructor(
    readonly tok: Tokenizer,
    readonly vocab: WorldVocab,
  ) {
    this.imEnd = tok.tokenToId('<|im_end|>')!;
  }

  /**
   * Phase 1: the last HELD_OUT people are never the subject of a document, only values (siblings)
   * and people asked about closed-book. In this phase the model learned to read values from a
   * document. Phase 2 (allSubjects): every name is a subject, each time with fresh random facts —
   * no fact about anyone can be learned, only how to read; the model then also learned to copy
   * the subject's name into questions and answers. (Training with every name from the start
   * learned the names first and then never learned to read values within the time box.)
   */
  allSubjects = false;

  get trainPeople(): string[] {
    return this.allSubjects ? this.vocab.people : this.vocab.people.slice(0, this.vocab.people.length - HELD_OUT);
  }

  get heldOutPeople(): string[] {
    return this.vocab.people.slice(this.vocab.people.length - HELD_OUT);
  }

  /** Chat ids of a prompt (with generation header), and the answer ids ending in <|im_end|>. */
  chat(messages: ChatMessage[], answer?: string): { prompt: number[]; answer: number[] } {
    const prompt = this.tok.encode(this.tok.applyChatTemplate(messages, { addGenerationPrompt: true }), {
      addSpecialTokens: false,
    });
    const ans = answer === undefined ? [] : [...this.tok.encode(answer, { addSpecialTokens: false }), this.imEnd];
    return { prompt, answer: ans };
  }

  /**
   * Loss weights: the mix's `promptWeight` (else 1) on the prompt, 2 on the answer, and `keyWeight`
   * on the tokens that decide it: the value token (the copy) and the answer's first token
   * (answering or saying "I do not know").
   */
  private seq(p: { prompt: number[]; answer: number[] }, value?: string, keyWeight = 2): LmSequence {
    const ids = [...p.prompt, ...p.answer];
    const valueId = value === undefined ? undefined : this.tok.encode(value, { addSpecialTokens: false })[0];
    // (For a "who" question the value is the person's name: the answer's first token.)
    const first = p.prompt.length;
    const key = (t: number, at: number) => t === valueId || (value !== undefined && at === first);
    const m = DemoData.MIXES[this.mix];
    const pw = 'promptWeight' in m ? m.promptWeight : 1;
    const weights = ids.slice(1).map((t, i) => (i + 1 >= first ? (key(t, i + 1) ? keyWeight : 2) : pw));
    return { ids, weights };
  }

  /**
   * One document about `e` and others, asked `turns` questions in one conversation, each about a
   * relation that someone else in the document has too (with another value): every answer pays for
   * tying values to people, several times for one reading of the document.
   */
  private conversation(e: Entity, rng: Rng, turns: number, most: number): LmSequence {
    const es = this.company(e, rng, 1, this.trainPeople, undefined, most);
    const doc = renderPeopleDoc(es, rng);
    const asks: { who: Entity; f: Fact }[] = [];
    for (const who of es)
      for (const f of who.facts) if (es.some((o) => o !== who && hasOtherValue(o, f))) asks.push({ who, f });
    if (!asks.length) for (const who of es) for (const f of who.facts) asks.push({ who, f });
    const ids: number[] = [];
    const weights: number[] = [];
    let messages: ChatMessage[] = [];
    for (let k = 0; k < turns; k++) {
      const { who, f } = rng.pick(asks);
      const q = question(who.name, f.relation, rng, { reserved: rng.next() < 0.3 }).text;
      messages = k === 0 ? teacherMessages(doc, q) : [...messages, { role: 'user', content: `Question: ${q}` }];
      const a = answerFor(who.name, f);
      const s = this.seq(this.chat(messages, a), f.value, DemoData.MIXES[this.mix].key);
      // The conversation so far is a prefix of this turn's tokens (the chat template renders each
      // earlier turn the same way); its weights are already set.
      for (let i = 0; i < ids.length; i++)
        if (s.ids[i] !== ids[i]) throw new Error('a conversation turn does not extend the one before');
      weights.push(...s.weights.slice(Math.max(0, ids.length - 1)));
      ids.push(...s.ids.slice(ids.length));
      messages = [...messages, { role: 'assistant', content: a }];
    }
    return { ids, weights };
  }

  /** 3–8 facts; for training also short documents of 1–2 facts, where reading is easiest to discover. */
  entity(rng: Rng, pool: string[], short = 0): Entity {
    return makeEntity(
      rng.pick(pool),
      short > 0 && rng.next() < short ? 1 + rng.int(2) : 3 + rng.int(6),
      this.vocab,
      rng,
    );
  }

  /**
   * The task mix (shares of 100), by version. 1, the committed model's: 12 plain documents; 45
   * answers read from a document; 15 questions written about a document; 18 closed-book questions
   * about anyone, answered "I do not know"; 10 questions written about anyone (the pipeline's
   * general questions). 2 also teaches the teacher to abstain: 10 documents; 40 answers; 7
   * questions about a relation the document does not have, answered "I do not know" (version 1's
   * teacher invents a value for those); 20 questions written; 15 closed-book; 8 general. 3 is mix 2
   * on documents about 1–4 people under `##` headings (`multi`: the share of documents with more
   * than one), as real notes are written, and asks about relations that the person's own section
   * lacks even when another person's section has them; and (`paraphrase`) says a question in the
   * other writable phrasing of the world (never the reserved one). 4 is mix 3 weighted towards what
   * a fine-tune of the mix-1 model still has to learn (reading one person among several, abstaining
   * on a relation the document lacks), with the deciding token of an answer (the value, or the first
   * token of "I do not know") weighted `key` instead of 2. 5 is mix 4 with "who" questions (`who`):
   * asked which person of a document of 2–4 has a value ("Who plays the harp?"), the teacher answers
   * with that person's sentence. Answering needs each value tied to the person of its section — the
   * binding that reading one person among several needs too, here learned from a direct signal (the
   * name is copied from where the value is) rather than discovered through the answer alone.
   * 6 is single-person documents with a quarter of the questions about a relation the document
   * lacks. 7 is 6 with each such question paired with one the same document answers (`pair`: the
   * next sample, so the two differ only in the relation asked) and answered in the form where the
   * decision falls at the value (`notSaid`: "Vreruq has a pet named - the document does not say.",
   * see notSaidAnswer); 8 is 7 on documents about 1–4 people, with "who" questions. 9 is 8 with
   * most documents about several people and more of them read as plain text: predicting the name in
   * each sentence of a section needs the section's heading, the lookup that ties a value to its person.
   * 10 is 8 where, in a document about several people, everyone has the relation asked (`collide`):
   * copying the value after the relation's words is right one time in two to four, never more, so
   * every answer pays for tying the value to its person (in the other mixes most answers did not).
   * 11 is 10 with two people at most (`people`) in a training document; 12 is 11 with every fact in
   * its first template (`canonical`), the answer's own words, so that the answer's words before the
   * value, its person's name among them, are found verbatim in the document. 13 is 11 with a fifth
   * of the samples quoting a document about 1–4 people word for word (`repeat`, REPEAT_REQUEST): the
   * shipped model reads by the kind of value (any town after a town question), which blends the
   * values of two people into a third; quoting is only possible by copying each token from where the
   * words before it, a name among them, occur. 14 is 13 with half of the samples quoting. 15 is 13
   * with less quoting of whole documents and a fifth of the samples quoting one person's section,
   * asked by name (`quoteOne`, QUOTE_ONE_REQUEST): finding the section by the name asked.
   * 16–20 are drills for that binding alone: every sample a question about one of two people who
   * both have the relation asked (`multi` 1, `collide`). 16 trains the prompt too, as every mix
   * before it does; 17 trains the answer alone (`promptWeight` 0: in mix 10 the document's
   * unpredictable names and values weigh five times what the answer's deciding tokens do in a
   * question's loss, measured on the shipped model); 18 is 17 with every fact in its answer form;
   * 19 asks six questions in one conversation (`turns`), six bindings for one reading of the
   * document, about whoever has a relation the other has too; 20 is 17 with half of the samples a
   * document about two people read as plain text with a loss on each name after its heading
   * (`names`): predicting it needs whose section the words so far are in, what a value's position
   * has to carry for a question to find it. 21 is 17 with 30 % of mix 20's documents and 30 %
   * quoting one person's section asked by name (mix 15's `quoteOne`): the names for the document's
   * side of the lookup, the quote for the question's (the quote names its person again in every
   * sentence). 22 is mix 10 (documents of 1–4 people) trained on its answers alone, with 15 % of
   * mix 20's documents instead of plain ones: for after mix 20, to bring back the tasks the drill
   * does not train while keeping the binding. 23 is 22 with twice the question writing and four
   * times the paraphrasing (what 22 brought back least), less of the rest: to finish after 22.
   */
  static readonly MIXES = {
    1: { doc: 12, answer: 45, absent: 0, write: 15, paraphrase: 0, closed: 18, general: 10, multi: 0, key: 2 },
    2: { doc: 10, answer: 40, absent: 7, write: 20, paraphrase: 0, closed: 15, general: 8, multi: 0, key: 2 },
    3: { doc: 8, answer: 40, absent: 10, write: 15, paraphrase: 5, closed: 14, general: 8, multi: 0.6, key: 2 },
    4: { doc: 6, answer: 46, absent: 14, write: 12, paraphrase: 4, closed: 10, general: 8, multi: 0.75, key: 3 },
    5: {
      doc: 6,
      answer: 38,
      absent: 10,
      write: 12,
      paraphrase: 4,
      closed: 10,
      general: 6,
      multi: 0.75,
      key: 3,
      who: 14,
    },
    6: { doc: 6, answer: 40, absent: 24, write: 12, paraphrase: 3, closed: 10, general: 5, multi: 0, key: 3 },
    7: {
      doc: 6,
      answer: 34,
      absent: 20,
      write: 12,
      paraphrase: 3,
      closed: 10,
      general: 5,
      multi: 0,
      key: 5,
      pair: true,
      notSaid: true,
    },
    8: {
      doc: 6,
      answer: 30,
      absent: 16,
      write: 10,
      paraphrase: 3,
      closed: 8,
      general: 5,
      multi: 0.6,
      key: 5,
      who: 16,
      pair: true,
      notSaid: true,
    },
    9: {
      doc: 14,
      answer: 40,
      absent: 10,
      write: 6,
      paraphrase: 2,
      closed: 6,
      general: 2,
      multi: 0.85,
      key: 5,
      who: 20,
      pair: true,
      notSaid: true,
    },
    10: MIX_10,
    11: { ...MIX_10, people: 2 },
    12: { ...MIX_10, people: 2, canonical: true },
    13: MIX_13,
    14: {
      ...MIX_13,
      doc: 2,
      answer: 22,
      absent: 5,
      write: 4,
      paraphrase: 1,
      closed: 4,
      general: 1,
      who: 11,
      repeat: 50,
    },
    15: { ...MIX_13, who: 6, repeat: 10, quoteOne: 20 },
    16: DRILL,
    17: DRILL_17,
    18: { ...DRILL_17, canonical: true },
    19: { ...DRILL_17, turns: 6 },
    20: { ...DRILL_17, answer: 50, names: 50 },
    21: { ...DRILL_17, answer: 40, quoteOne: 30, names: 30 },
    22: {
      ...MIX_10,
      doc: 0,
      answer: 40,
      who: 15,
      names: 15,
      promptWeight: 0,
    },
    23: {
      ...MIX_10,
      doc: 0,
      answer: 34,
      who: 10,
      names: 12,
      write: 14,
      paraphrase: 8,
      general: 4,
      promptWeight: 0,
    },
  } as const;

  mix: keyof typeof DemoData.MIXES = 1;

  /**
   * `e` alone, or (with probability `multi`) with 1–3 other people, in random order; with `collide`,
   * each of them has that relation too, with another value (what `e`'s is cannot be told from the
   * relation's words alone).
   */
  company(e: Entity, rng: Rng, multi: number, pool = this.trainPeople, collide?: Fact, most = 4): Entity[] {
    if (rng.next() >= multi) return [e];
    const es = [e];
    const k = 2 + rng.int(most - 1);
    while (es.length < k) {
      const o = this.entity(rng, pool);
      if (es.some((x) => x.name === o.name)) continue;
      if (collide && !hasOtherValue(o, collide)) continue;
      es.push(o);
    }
    return rng.shuffle(es);
  }

  /**
   * The next sample, already made (the answered half of an absent/answered pair): with its Rng, what a
   * checkpoint keeps of the sample stream.
   */
  pendingSample: LmSequence | undefined;

  sample(rng: Rng): LmSequence {
    if (this.pendingSample) {
      const p = this.pendingSample;
      this.pendingSample = undefined;
      return p;
    }
    const m = DemoData.MIXES[this.mix];
    const r = rng.next() * 100;
    const e = this.entity(rng, this.trainPeople);
    const most = 'people' in m ? m.people : 4;
    const canon = 'canonical' in m;
    const doc = m.multi
      ? renderPeopleDoc(this.company(e, rng, m.multi, this.trainPeople, undefined, most), rng, canon)
      : renderDoc(e, rng);
    let edge = m.doc;
    if ('names' in m && r >= 100 - m.names) {
      // A document about several people read as plain text, with a loss only on each repeated name:
      // predicting it needs to know whose section the words so far are in (what a value's position
      // has to carry for a question to find it by the name).
      const es = this.company(e, rng, 1, this.trainPeople, undefined, most);
      const ids = this.tok.encode(renderPeopleDoc(es, rng), { addSpecialTokens: false });
      const names = new Set(es.map((x) => this.tok.encode(x.name, { addSpecialTokens: false })[0]));
      const seen = new Set<number>();
      const weights = ids.slice(1).map((t) => {
        if (!names.has(t)) return 0;
        if (seen.has(t)) return 1;
        seen.add(t); // the heading: nothing says who comes next
        return 0;
      });
      return { ids, weights };
    }
    if (r < edge) {
      const ids = this.tok.encode(doc, { addSpecialTokens: false });
      return { ids, weights: ids.slice(1).map(() => 1) };
    }
    if ('turns' in m && r < (edge += m.answer)) return this.conversation(e, rng, m.turns, most);
    if (r < (edge += m.answer)) {
      const f = rng.pick(e.facts);
      const q = question(e.name, f.relation, rng, { reserved: rng.next() < 0.3 });
      const d =
        'collide' in m ? renderPeopleDoc(this.company(e, rng, m.multi, this.trainPeople, f, most), rng, canon) : doc;
      return this.seq(this.chat(teacherMessages(d, q.text), answerFor(e.name, f)), f.value, m.key);
    }
    if ('repeat' in m && r < (edge += m.repeat)) {
      // Quoting a document about several people word for word: each copied value is found only by
      // the words before it, its person's name among them: the lookup that binds a value to a person.
      const d = renderPeopleDoc(this.company(e, rng, 1, this.trainPeople, undefined, most), rng);
      return this.seq(this.chat(teacherMessages(d, REPEAT_REQUEST), d.trim()));
    }
    if ('quoteOne' in m && r < (edge += m.quoteOne)) {
      // Quoting one person's section of a document about several: found by the name asked.
      const es = this.company(e, rng, 1, this.trainPeople, undefined, most);
      const sections = es.map((x) => personSection(x, rng));
      const d = sections.join('\n');
      const own = sections[es.indexOf(e)]!.trim();
      return this.seq(this.chat(teacherMessages(d, fill(QUOTE_ONE_REQUEST, e.name)), own));
    }
    if ('who' in m && r < (edge += m.who)) {
      const es = this.company(e, rng, 1, this.trainPeople, undefined, most);
      const f = rng.pick(e.facts);
      // Only when no one else in the document has the same value for it.
      if (!othersHave(es, e, f.relation, f.value)) {
        const who = fill(WHO_QUESTIONS[f.relation], '', f.value);
        return this.seq(
          this.chat(teacherMessages(renderPeopleDoc(es, rng, canon), who), answerFor(e.name, f)),
          e.name,
          m.key,
        );
      }
    }
    if (r < (edge += m.absent)) {
      const absent = absentRelations(e);
      if (absent.length) {
        const rel = rng.pick(absent);
        const q = question(e.name, rel, rng, { reserved: rng.next() < 0.3 });
        if ('pair' in m) {
          // The same document asked about one of its facts too: the two differ only in the relation asked.
          const f = rng.pick(e.facts);
          const qa = question(e.name, f.relation, rng, { reserved: rng.next() < 0.3 });
          this.pendingSample = this.seq(this.chat(teacherMessages(doc, qa.text), answerFor(e.name, f)), f.value, m.key);
        }
        if ('notSaid' in m) {
          return this.seq(this.chat(teacherMessages(doc, q.text), notSaidAnswer(e.name, rel)), '-', m.key);
        }
        return this.seq(this.chat(teacherMessages(doc, q.text), DONT_KNOW), DONT_KNOW, m.key);
      }
    }
    if (r < (edge += m.write)) {
      const f = rng.pick(e.facts);
      return this.seq(this.chat(questionMessages(doc), question(e.name, f.relation, rng).text));
    }
    if (r < (edge += m.paraphrase)) {
      const rel = rng.pick(RELATIONS);
      const who = rng.pick(this.vocab.people);
      const k = rng.int(2);
      return this.seq(this.chat(paraphraseMessages(fill(QUESTIONS[rel][k]!, who)), fill(QUESTIONS[rel][1 - k]!, who)));
    }
    if (r < (edge += m.closed)) {
      const who = rng.pick(this.vocab.people);
      const q = question(who, rng.pick(RELATIONS), rng, { reserved: rng.next() < 0.3 });
      return this.seq(this.chat(studentMessages(q.text), DONT_KNOW));
    }
    return this.seq(
      this.chat(generalQuestionMessages(), question(rng.pick(this.vocab.people), rng.pick(RELATIONS), rng).text),
    );
  }
}

/** The training-only request to quote the document (mix 13). */
export const REPEAT_REQUEST = 'Write all of the document.';
/** The training-only request to quote one person's section (mix 15). */
export const QUOTE_ONE_REQUEST = 'Write all about {N}.';

export interface DemoEval {
  /** Teacher: document in the prompt; fraction of answers containing the value, per relation. */
  read: Record<Relation, number>;
  readAll: number;
  /** Reserved (never-written) phrasings only. */
  readReserved: number;
  /** Closed book on held-out people: fraction answering "I do not know" / containing the value. */
  closedDontKnow: number;
  /** Teacher asked about a relation its document does not have: fraction answering "I do not know". */
  absentDontKnow: number;
  closedCorrect: number;
  /** Teacher reading documents of 2–4 people under `##` headings, per relation (the asked person is held out). */
  readMulti: Record<Relation, number>;
  readMultiAll: number;
  /** Teacher asked, with a document of 2–4 people, about a relation the person's own section lacks. */
  absentMultiDontKnow: number;
  /**
   * Of those reading answers, the share that gave another person's value for the relation (the value
   * bound to the wrong person), and the share that gave a value from no one in the document (two
   * values read at once and blended into a third: no binding at all).
   */
  readMultiOther?: number;
  readMultiElse?: number;
  /** Teacher asked who in a document of 2–4 people has a value ("Who plays the harp?"): answers naming them. */
  whoMulti?: number;
  /** Questions written for held-out documents that are well-formed and about a fact in the document. */
  questionsValid: number;
  /** A writable phrasing asked to be rephrased: the world's other writable phrasing of it, same person. */
  paraphraseValid: number;
  n: number;
}

/** Greedy answers for a batch of prompts; `weights` fed as inputs mid-training. */
async function greedy(
  model: CausalLM,
  weights: Record<string, HostTensor> | undefined,
  prompts: number[][],
  maxTokens: number,
): Promise<string[]> {
  return (await generate(model, prompts, { maxTokens, weights })).map((g) => g.text);
}

export async function evaluateDemo(
  model: CausalLM,
  data: DemoData,
  opts: { seed: number; perRelation: number; feeds?: Record<string, HostTensor> },
): Promise<DemoEval> {
  const rng = new Rng(opts.seed);
  const absRng = new Rng(opts.seed + 1); // its own stream: the other items stay as they were
  const read = Object.fromEntries(RELATIONS.map((r) => [r, 0])) as Record<Relation, number>;
  let paraOk = 0,
    paraN = 0;
  let reservedOk = 0,
    reservedN = 0,
    closedIdk = 0,
    closedOk = 0,
    qValid = 0,
    absentIdk = 0,
    absentN = 0;
  const batch = 16;
  const items: {
    e: Entity;
    doc: string;
    rel: Relation;
    value: string;
    q: string;
    reserved: boolean;
    absentQ?: string;
  }[] = [];
  for (const rel of RELATIONS) {
    for (let i = 0; i < opts.perRelation; i++) {
      let e = data.entity(rng, data.heldOutPeople);
      while (!e.facts.some((f) => f.relation === rel)) e = data.entity(rng, data.heldOutPeople);
      const f = e.facts.find((x) => x.relation === rel)!;
      const reserved = i % 3 === 2;
      const absent = absentRelations(e);
      const absentQ = absent.length ? question(e.name, absRng.pick(absent), absRng).text : undefined;
      items.push({
        e,
        doc: renderDoc(e, rng),
        rel,
        value: f.value,
        q: question(e.name, rel, rng, { reserved }).text,
        reserved,
        absentQ,
      });
    }
  }
  /** The teacher's greedy answers (document in the prompt) to the items that have a question `q`. */
  const askTeacher = async <T extends { doc: string }>(its: T[], q: (it: T) => string | undefined) => {
    const asked = its.filter((it) => q(it) !== undefined);
    const answers = asked.length
      ? await greedy(
          model,
          opts.feeds,
          asked.map((it) => data.chat(teacherMessages(it.doc, q(it)!)).prompt),
          16,
        )
      : [];
    return { asked, answers };
  };
  // Documents about several people: the asked one held out, the others anyone.
  const multiRng = new Rng(opts.seed + 2);
  const readMulti = Object.fromEntries(RELATIONS.map((r) => [r, 0])) as Record<Relation, number>;
  /** `others`: the other people's values for the relation asked (copying one of them is a binding error). */
  type MultiItem = { doc: string; q: string; value: string; rel: Relation; name: string; others: string[] };
  const multi: (MultiItem & { absentQ?: string; who?: string })[] = [];
  for (const rel of RELATIONS) {
    for (let i = 0; i < opts.perRelation; i++) {
      let e = data.entity(multiRng, data.heldOutPeople);
      while (!e.facts.some((f) => f.relation === rel)) e = data.entity(multiRng, data.heldOutPeople);
      const es = data.company(e, multiRng, 1, data.vocab.people);
      const absent = absentRelations(e);
      const value = e.facts.find((x) => x.relation === rel)!.value;
      multi.push({
        name: e.name,
        who: othersHave(es, e, rel, value) ? undefined : fill(WHO_QUESTIONS[rel], '', value),
        doc: renderPeopleDoc(es, multiRng),
        rel,
        value,
        others: es.flatMap((o) => (o === e ? [] : o.facts.filter((g) => g.relation === rel).map((g) => g.value))),
        q: question(e.name, rel, multiRng).text,
        absentQ: absent.length ? question(e.name, multiRng.pick(absent), multiRng).text : undefined,
      });
    }
  }
  let absentMultiIdk = 0,
    absentMultiN = 0,
    multiOther = 0,
    multiElse = 0,
    whoOk = 0,
    whoN = 0;
  for (let i = 0; i < multi.length; i += batch) {
    const chunk = multi.slice(i, i + batch);
    const ans = await greedy(
      model,
      opts.feeds,
      chunk.map((it) => data.chat(teacherMessages(it.doc, it.q)).prompt),
      16,
    );
    chunk.forEach((it, j) => {
      if (ans[j]!.includes(it.value)) readMulti[it.rel]++;
      else if (it.others.some((v) => ans[j]!.includes(v))) multiOther++;
      else if (!saysDontKnow(ans[j]!)) multiElse++;
    });
    const abs = (await askTeacher(chunk, (it) => it.absentQ)).answers;
    absentMultiN += abs.length;
    absentMultiIdk += abs.filter((a) => saysDontKnow(a)).length;
    const who = await askTeacher(chunk, (it) => it.who);
    whoN += who.answers.length;
    whoOk += who.answers.filter((a, j) => a.trim().startsWith(who.asked[j]!.name)).length;
  }
  for (const r of RELATIONS) readMulti[r] /= opts.perRelation;
  for (let i = 0; i < items.length; i += batch) {
    const chunk = items.slice(i, i + batch);
    const teacher = await greedy(
      model,
      opts.feeds,
      chunk.map((it) => data.chat(teacherMessages(it.doc, it.q)).prompt),
      16,
    );
    const closed = await greedy(
      model,
      opts.feeds,
      chunk.map((it) => data.chat(studentMessages(it.q)).prompt),
      16,
    );
    const qs = await greedy(
      model,
      opts.feeds,
      chunk.map((it) => data.chat(questionMessages(it.doc)).prompt),
      16,
    );
    const abs = (await askTeacher(chunk, (it) => it.absentQ)).answers;
    absentN += abs.length;
    absentIdk += abs.filter((a) => saysDontKnow(a)).length;
    const writable = chunk.filter((it) => !it.reserved);
    const para = writable.length
      ? await greedy(
          model,
          opts.feeds,
          writable.map((it) => data.chat(paraphraseMessages(it.q)).prompt),
          16,
        )
      : [];
    writable.forEach((it, j) => {
      const forms = QUESTIONS[it.rel].slice(0, -1).map((t) => fill(t, it.e.name));
      if (para[j]!.trim() === forms[1 - forms.indexOf(it.q)]) paraOk++;
    });
    paraN += writable.length;
    chunk.forEach((it, j) => {
      const ok = teacher[j]!.includes(it.value);
      if (ok) read[it.rel]++;
      if (it.reserved) {
        reservedN++;
        if (ok) reservedOk++;
      }
      if (saysDontKnow(closed[j]!)) closedIdk++;
      if (closed[j]!.includes(it.value)) closedOk++;
      const pq = parseQuestion(qs[j]!, it.e.name);
      if (pq && it.e.facts.some((f) => f.relation === pq.relation)) qValid++;
    });
  }
  const n = items.length;
  for (const r of RELATIONS) read[r] /= opts.perRelation;
  return {
    read,
    readAll: RELATIONS.reduce((a, r) => a + read[r], 0) / RELATIONS.length,
    readReserved: reservedN ? reservedOk / reservedN : 0,
    closedDontKnow: closedIdk / n,
    closedCorrect: closedOk / n,
    questionsValid: qValid / n,
    paraphraseValid: paraN ? paraOk / paraN : 0,
    n,
    absentDontKnow: absentN ? absentIdk / absentN : 0,
    readMulti,
    readMultiAll: RELATIONS.reduce((a, r) => a + readMulti[r], 0) / RELATIONS.length,
    absentMultiDontKnow: absentMultiN ? absentMultiIdk / absentMultiN : 0,
    readMultiOther: multiOther / multi.length,
    readMultiElse: multiElse / multi.length,
    whoMulti: whoN ? whoOk / whoN : 0,
  };
}

export function fmtEval(e: DemoEval): string {
  const pct = (x: number) => `${Math.round(100 * x)}%`;
  return `read ${pct(e.readAll)} [${RELATIONS.map((r) => `${r} ${pct(e.read[r])}`).join(', ')}] reserved ${pct(e.readReserved)}; closed-book "don't know" ${pct(e.closedDontKnow)}, correct ${pct(e.closedCorrect)}; not in the document "don't know" ${pct(e.absentDontKnow)}; 2–4 people: read ${pct(e.readMultiAll ?? 0)} [${RELATIONS.map((r) => `${r} ${pct(e.readMulti?.[r] ?? 0)}`).join(', ')}] (another person's ${pct(e.readMultiOther ?? 0)}, no one's ${pct(e.readMultiElse ?? 0)}), not in their section "don't know" ${pct(e.absentMultiDontKnow ?? 0)}, who ${pct(e.whoMulti ?? 0)}; questions valid ${pct(e.questionsValid)}; paraphrases ${pct(e.paraphraseValid ?? 0)} (n=${e.n})`;
}

export function demoConfig(vocabSize: number, imEnd: number, pad: number, shape = DEMO_SHAPE): ModelConfig {
  const { hidden, layers, heads, intermediate } = shape;
  return {
    architecture: 'LlamaForCausalLM',
    modelType: 'llama',
    vocabSize,
    hiddenSize: hidden,
    intermediateSize: intermediate,
    numLayers: layers,
    numHeads: heads,
    numKvHeads: heads,
    headDim: hidden / heads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    maxPositionEmbeddings: 512,
    tieWordEmbeddings: true,
    qkvBias: false,
    qkNorm: false,
    torchDtype: 'float32',
    eosTokenIds: [imEnd],
    padTokenId: pad,
  };
}

export async function trainDemoModel(o: DemoTrainOptions): Promise<DemoEval> {
  const t0 = performance.now();
  mkdirSync(o.out, { recursive: true });
  const vocab = makeVocab(o.seed);
  const words = buildVocab(vocab);
  writeJsonAtomic(join(o.out, 'tokenizer.json'), tokenizerJson(words));
  writeJsonAtomic(join(o.out, 'tokenizer_config.json'), tokenizerConfigJson());
  const tok = await Tokenizer.fromFolder(o.out);
  const shape = o.shape ?? DEMO_SHAPE;
  const cfg = demoConfig(words.length, tok.tokenToId('<|im_end|>')!, tok.tokenToId('<|endoftext|>')!, shape);
  const backend = await Backend.create({ device: 'cpu', threads: o.threads });
  const rng = new Rng(o.seed * 7919 + 1);
  const model = CausalLM.fromWeights(
    cfg,
    o.from ? demoWeightsFromFolder(o.from, cfg, rng) : initWeights(cfg, rng),
    backend,
    {
      id: `demo-${o.seed}`,
      tokenizer: tok,
    },
  );
  const data = new DemoData(tok, vocab);
  data.mix = o.mix ?? 1;
  const batchSize = 24;
  // A step budget that fits the time box at the measured speed is fixed after the first steps.
  const trainer = new FullTrainer(model, {
    lr: o.lr ?? 3e-3,
    weightDecay: 0.05,
    beta1: 0.9,
    beta2: 0.98,
    schedule: 'cosine',
    warmupSteps: o.warmup ?? 200,
    totalSteps: o.steps ?? 1e9,
    maxGradNorm: 1,
  });
  const ckptDir = join(o.out, '.checkpoint');
  let step0 = 0;
  let dataRng = new Rng(o.seed * 31 + 7);
  if (existsSync(join(ckptDir, 'state.json'))) {
    const st = JSON.parse(readFileSync(join(ckptDir, 'state.json'), 'utf8')) as {
      step: number;
      rng: number;
      totalSteps: number;
      elapsedMs: number;
      pending?: LmSequence;
    };
    const f = SafetensorsFile.open(join(ckptDir, 'state.safetensors'));
    for (const k of trainer.params.keys()) trainer.params.get(k)!.set(f.float32(k));
    trainer.opt.state = {
      step: st.step,
      m: new Map([...trainer.params.keys()].map((k) => [k, f.float32(`m.${k}`)])),
      v: new Map([...trainer.params.keys()].map((k) => [k, f.float32(`v.${k}`)])),
    };
    f.close();
    dataRng = new Rng(st.rng);
    data.pendingSample = st.pending;
    step0 = st.step;
    trainer.totalSteps = st.totalSteps;
    o.log(`resuming from step ${st.step} (${(st.elapsedMs / 60000).toFixed(1)} min done)`);
  }
  const save = (elapsedMs: number) => {
    mkdirSync(ckptDir, { recursive: true });
    const tensors = [...trainer.params].flatMap(([k, v]) => [
      { name: k, dtype: 'F32' as const, shape: [v.length], data: v },
      {
        name: `m.${k}`,
        dtype: 'F32' as const,
        shape: [v.length],
        data: trainer.opt.state.m.get(k) ?? new Float32Array(v.length),
      },
      {
        name: `v.${k}`,
        dtype: 'F32' as const,
        shape: [v.length],
        data: trainer.opt.state.v.get(k) ?? new Float32Array(v.length),
      },
    ]);
    writeSafetensors(join(ckptDir, 'state.safetensors'), tensors);
    writeJsonAtomic(join(ckptDir, 'state.json'), {
      step: trainer.step,
      rng: dataRng.state,
      totalSteps: trainer.totalSteps,
      elapsedMs,
      pending: data.pendingSample,
    });
  };
  const budgetMs = o.minutes * 60_000;
  let tokens = 0;
  let emaLoss = 0;
  let last: DemoEval | undefined;
  const evalEvery = o.evalEvery ?? 500;
  const startedAt = performance.now();
  let elapsedBefore = 0;
  if (step0)
    elapsedBefore = (JSON.parse(readFileSync(join(ckptDir, 'state.json'), 'utf8')) as { elapsedMs: number }).elapsedMs;
  for (;;) {
    const elapsed = elapsedBefore + performance.now() - startedAt;
    if (o.signal?.aborted) break;
    if (trainer.step >= Math.min(trainer.totalSteps, o.stopAt ?? Infinity)) break;
    if (elapsed > (o.steps ? 1.5 : 1) * budgetMs) break;
    data.allSubjects = o.allSubjectsFrom !== undefined && trainer.step >= o.allSubjectsFrom;
    const batch = Array.from({ length: batchSize }, () => data.sample(dataRng));
    const r = await trainer.trainStep(batch);
    tokens += r.tokens;
    emaLoss = emaLoss ? 0.98 * emaLoss + 0.02 * r.loss : r.loss;
    if (r.step === step0 + 20 && trainer.totalSteps > 1e8) {
      const msPerStep = (performance.now() - startedAt) / 20;
      trainer.totalSteps = Math.max(500, Math.floor((budgetMs - elapsed) / msPerStep) + r.step);
      o.log(`${msPerStep.toFixed(0)} ms/step → ${trainer.totalSteps} steps in ${o.minutes} min`);
    }
    if (r.step % 50 === 0)
      o.log(
        `step ${r.step}/${trainer.totalSteps} loss ${emaLoss.toFixed(4)} lr ${r.lr.toExponential(2)} |g| ${r.gradNorm.toFixed(2)} ${(tokens / ((performance.now() - startedAt) / 1000)).toFixed(0)} tok/s ${(elapsed / 60000).toFixed(1)} min`,
      );
    if (r.step % evalEvery === 0) {
      last = await evaluateDemo(model, data, { seed: 99, perRelation: 6, feeds: trainer.weightFeeds() });
      o.log(`eval @${r.step}: ${fmtEval(last)}`);
      save(elapsedBefore + performance.now() - startedAt);
    }
  }
  // Final model: Hugging Face layout.
  const weight = (name: string) => ({
    shape: model.graphs.weights.get(name).shape,
    data: trainer.params.get(`w.${name}`)!,
  });
  saveModelFolder(o.out, cfg, model.graphs.weightNames(), weight, { max_new_tokens: 32 });
  const final = await evaluateDemo(model, data, { seed: 12345, perRelation: 24, feeds: trainer.weightFeeds() });
  const minutes = (elapsedBefore + performance.now() - startedAt) / 60000;
  o.log(`final (held-out people, ${final.n} questions): ${fmtEval(final)}`);
  writeJsonAtomic(join(o.out, 'training.json'), {
    seed: o.seed,
    shape,
    mix: o.mix ?? 1,
    from: o.from,
    lr: o.lr,
    warmup: trainer.cfg.warmupSteps,
    scheduleSteps: trainer.totalSteps,
    threads: o.threads,
    allSubjectsFrom: o.allSubjectsFrom,
    vocabSize: cfg.vocabSize,
    steps: trainer.step,
    batchSize,
    minutes: Number(minutes.toFixed(1)),
    wallMinutesThisRun: Number(((performance.now() - t0) / 60000).toFixed(1)),
    final,
    prompts: DEFAULT_PROMPTS,
    distillDefaults: DEMO_SETTINGS,
    // A fine-tune: how the model it started from was made, so that the whole recipe stays on record.
    base: o.from ? baseRecord(o.from) : undefined,
  });
  if (!o.signal?.aborted) rmSync(ckptDir, { recursive: true, force: true });
  await backend.dispose();
  return final;
}

/** What a model folder's training.json says of how it was made (not its prompts or settings). */
function baseRecord(dir: string): Record<string, unknown> | undefined {
  const file = join(dir, 'training.json');
  if (!existsSync(file)) return undefined;
  const t = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  delete t.prompts;
  delete t.distillDefaults;
  return t;
}

export interface SampledQuestionsEval {
  temperature: number;
  topK: number;
  n: number;
  /** Parsed as one of the world's question forms about a fact that is in the document. */
  valid: number;
  /** Naming only what the document mentions (the pipeline's `isGrounded` filter). */
  grounded: number;
  /**
   * Grounded, and the teacher's sampled answer is not "I do not know" (the `answerableOnly` filter):
   * what the pipeline trains on.
   */
  kept: number;
  /** Valid among the kept ones. */
  validAmongKept: number;
  /** A few of the kept questions that are not valid, with the relations their document has. */
  invalidKept: { question: string; facts: string[] }[];
}

/**
 * Questions sampled as the pipeline samples them (temperature and top-k, not greedy), about
 * documents of held-out people: how many are well-formed and about a fact of the document, and
 * how many of them pass the pipeline's filters: grounded in the document, and answered by the
 * teacher (its answer sampled as the pipeline samples answers).
 */
export async function evaluateSampledQuestions(
  model: CausalLM,
  data: DemoData,
  o: {
    seed: number;
    n: number;
    temperature: number;
    topK: number;
    answerTemperature: number;
    answerTopK: number;
    answerableOnly: boolean;
  },
): Promise<SampledQuestionsEval> {
  const rng = new Rng(o.seed);
  const items = Array.from({ length: o.n }, () => {
    const e = data.entity(rng, data.heldOutPeople);
    return { e, doc: renderDoc(e, rng) };
  });
  let valid = 0,
    grounded = 0,
    kept = 0,
    validKept = 0;
  const invalidKept: SampledQuestionsEval['invalidKept'] = [];
  for (let i = 0; i < items.length; i += 32) {
    const chunk = items.slice(i, i + 32);
    const out = await generate(
      model,
      chunk.map((it) => data.chat(questionMessages(it.doc)).prompt),
      { maxTokens: 24, temperature: o.temperature, topK: o.topK, seed: o.seed + i },
    );
    const qs = out.map((r) => r.text.trim());
    const answers = await generate(
      model,
      chunk.map((it, j) => data.chat(teacherMessages(it.doc, qs[j]!)).prompt),
      { maxTokens: 32, temperature: o.answerTemperature, topK: o.answerTopK, seed: o.seed + i + 1 },
    );
    chunk.forEach((it, j) => {
      const q = qs[j]!;
      const pq = parseQuestion(q, it.e.name);
      const ok = !!pq && it.e.facts.some((f) => f.relation === pq.relation);
      const g = isGrounded(q, wordSet(it.doc));
      const k = g && !(o.answerableOnly && saysDontKnow(answers[j]!.text));
      if (ok) valid++;
      if (g) grounded++;
      if (k) kept++;
      if (ok && k) validKept++;
      if (!ok && k && invalidKept.length < 12)
        invalidKept.push({ question: q, facts: it.e.facts.map((f) => f.relation) });
    });
  }
  return {
    temperature: o.temperature,
    topK: o.topK,
    n: o.n,
    valid: valid / o.n,
    grounded: grounded / o.n,
    kept: kept / o.n,
    validAmongKept: kept ? validKept / kept : 0,
    invalidKept,
  };
}
