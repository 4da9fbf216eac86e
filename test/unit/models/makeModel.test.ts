// make-model: deterministic random models in the Hugging Face layout whose every tiny shape loads
// and whose cut-down tokenizers still encode any text within the vocabulary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeModel, buildTokenizer, MODEL_SHAPES, weightPlan } from '../../../src/tools/makeModel';
import { loadModelFolder } from '../../../src/engine/models/folder';
import { Tokenizer } from '../../../src/engine/tokenizer';
import { makeModelCommand } from '../../../src/cli/makeModel';
import { UsageError } from '../../../src/cli/command';

const root = mkdtempSync(join(tmpdir(), 'dd-make-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const files = (dir: string) =>
  Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, readFileSync(join(dir, f))]),
  );

/** Seeded random text over ASCII, Latin-1, CJK, emoji and rare code points. */
function randomText(seed: number, len: number): string {
  let s = seed;
  const r = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0x20, 0x7e],
    [0x09, 0x0d],
    [0xa0, 0x24f],
    [0x400, 0x4ff],
    [0x4e00, 0x9fff],
    [0x1f300, 0x1faff],
    [0x10000, 0x10ffff],
  ];
  let out = '';
  for (let i = 0; i < len; i++) {
    const [lo, hi] = ranges[Math.floor(r() * ranges.length)]!;
    let cp = lo + Math.floor(r() * (hi - lo + 1));
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
    out += String.fromCodePoint(cp);
  }
  return out;
}

test('make-model: the same seed gives byte-identical files, another seed other weights', () => {
  const a = makeModel({ shape: 'tiny-qwen3', seed: 7, out: join(root, 'a') });
  makeModel({ shape: 'tiny-qwen3', seed: 7, out: join(root, 'b') });
  makeModel({ shape: 'tiny-qwen3', seed: 8, out: join(root, 'c') });
  const [fa, fb, fc] = [files(a.dir), files(join(root, 'b')), files(join(root, 'c'))];
  assert.deepEqual(Object.keys(fa), [
    'config.json',
    'generation_config.json',
    'model.safetensors',
    'special_tokens_map.json',
    'tokenizer.json',
    'tokenizer_config.json',
  ]);
  for (const k of Object.keys(fa)) assert.ok(fa[k]!.equals(fb[k]!), `${k} differs between two runs with seed 7`);
  assert.ok(!fa['model.safetensors']!.equals(fc['model.safetensors']!), 'seed 8 gives other weights');
  assert.ok(fa['tokenizer.json']!.equals(fc['tokenizer.json']!));
  // Dtype variants hold the same values, rounded.
  const h = makeModel({ shape: 'tiny-qwen3', seed: 7, out: join(root, 'h'), dtype: 'float16' });
  const bf = makeModel({ shape: 'tiny-qwen3', seed: 7, out: join(root, 'bf'), dtype: 'bfloat16' });
  const m32 = loadModelFolder(a.dir),
    m16 = loadModelFolder(h.dir),
    mbf = loadModelFolder(bf.dir);
  try {
    assert.equal(m16.config.torchDtype, 'float16');
    assert.equal(mbf.weights.info('model.embed_tokens.weight').dtype, 'BF16');
    const x = m32.weights.float32('model.layers.0.mlp.up_proj.weight');
    const y = m16.weights.float32('model.layers.0.mlp.up_proj.weight');
    const z = mbf.weights.float32('model.layers.0.mlp.up_proj.weight');
    for (let i = 0; i < x.length; i++) {
      assert.ok(Math.abs(x[i]! - y[i]!) <= 1e-3 * Math.abs(x[i]!) + 1e-7);
      assert.ok(Math.abs(x[i]! - z[i]!) <= 8e-3 * Math.abs(x[i]!));
    }
  } finally {
    for (const m of [m32, m16, mbf]) m.weights.close();
  }
});

test('make-model: every tiny shape loads, and its tokenizer works within the vocabulary', async () => {
  const tiny = Object.keys(MODEL_SHAPES).filter((s) => s.startsWith('tiny-'));
  assert.deepEqual(tiny, ['tiny-llama', 'tiny-llama3', 'tiny-qwen2', 'tiny-qwen3', 'tiny-mistral']);
  for (const shape of tiny) {
    const out = join(root, shape);
    makeModel({ shape, seed: 1, out });
    const m = loadModelFolder(out);
    try {
      const c = m.config;
      const s = MODEL_SHAPES[shape]!;
      assert.equal(c.architecture, s.architecture);
      assert.equal(c.vocabSize, 512);
      assert.equal(c.tieWordEmbeddings, s.tieWordEmbeddings);
      if (shape === 'tiny-qwen2') assert.ok(c.qkvBias);
      if (shape === 'tiny-qwen3') assert.deepEqual([c.qkNorm, c.headDim, c.hiddenSize / c.numHeads], [true, 24, 16]);
      if (shape === 'tiny-llama3') assert.equal(c.ropeScaling?.type, 'llama3');
      // Initialisation: linear weights ~ N(0, 0.02), norms ~ 1 + 0.1·N(0, 1).
      const stats = (v: Float32Array) => {
        const mean = v.reduce((a, b) => a + b, 0) / v.length;
        return [mean, Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length)];
      };
      const [em, es] = stats(m.weights.float32('model.embed_tokens.weight'));
      assert.ok(Math.abs(em!) < 0.002 && Math.abs(es! - 0.02) < 0.002, `embedding mean ${em} std ${es}`);
      const [nm, ns] = stats(m.weights.float32('model.layers.0.input_layernorm.weight'));
      assert.ok(Math.abs(nm! - 1) < 0.05 && Math.abs(ns! - 0.1) < 0.04, `norm mean ${nm} std ${ns}`);

      const tok = await Tokenizer.fromFolder(out);
      assert.equal(tok.vocabSize, 512);
      // Special ids agree between tokenizer, config.json and generation_config.json.
      for (const id of [...c.eosTokenIds, ...m.generation.eosTokenIds])
        assert.ok(tok.eosIds.includes(id), `${shape}: eos ${id} not in tokenizer eos ${tok.eosIds}`);
      if (s.tokenizer === 'llama3') {
        assert.equal(c.bosTokenId, tok.bosId);
        assert.equal(tok.idToToken(tok.bosId!), '<|begin_of_text|>');
        assert.deepEqual(tok.eosIds.map((i) => tok.idToToken(i)).sort(), ['<|end_of_text|>', '<|eot_id|>']);
      } else {
        assert.equal(tok.bosId, undefined);
        assert.equal(tok.idToToken(c.bosTokenId!), '<|endoftext|>');
        assert.equal(tok.idToToken(m.generation.padTokenId!), '<|endoftext|>');
        assert.equal(tok.padId, m.generation.padTokenId);
        assert.equal(tok.idToToken(c.eosTokenIds[0]!), '<|im_end|>');
      }
      for (let k = 0; k < 4; k++) {
        const text = randomText(k * 31 + shape.length, 200);
        const ids = tok.encode(text, { addSpecialTokens: false });
        assert.ok(
          ids.every((id) => id >= 0 && id < c.vocabSize),
          `${shape}: ids within the vocabulary`,
        );
        const want = s.tokenizer === 'qwen3' ? text.normalize('NFC') : text;
        assert.equal(tok.decode(ids), want, `${shape}: round trip of random text ${k}`);
      }
      const chat = tok.applyChatTemplate([{ role: 'user', content: 'Hi there' }], { addGenerationPrompt: true });
      const ids = tok.encode(chat, { addSpecialTokens: false });
      assert.ok(ids.every((id) => id < c.vocabSize));
      assert.equal(tok.decode(ids), chat);
      const marker = s.tokenizer === 'llama3' ? '<|start_header_id|>' : '<|im_start|>';
      assert.ok(ids.includes(tok.tokenToId(marker)!), `${shape}: ${marker} encodes as one special token`);
      assert.ok(tok.specialIds.has(tok.tokenToId(marker)!));
    } finally {
      m.weights.close();
    }
  }
});

test('make-model: tokenizers cut to a vocabulary keep bytes and consistent merges', () => {
  const t = buildTokenizer('llama3', 49152, 8192);
  const vocab = t.tokenizer.model.vocab as Record<string, number>;
  assert.equal(Object.keys(vocab).length, 49152 - 5);
  assert.deepEqual(
    t.tokenizer.added_tokens.map((a: { id: number; content: string }) => [a.id, a.content]),
    [
      [49147, '<|begin_of_text|>'],
      [49148, '<|end_of_text|>'],
      [49149, '<|start_header_id|>'],
      [49150, '<|end_header_id|>'],
      [49151, '<|eot_id|>'],
    ],
  );
  for (const m of t.tokenizer.model.merges as string[]) {
    const [a, b] = [m.slice(0, m.indexOf(' ')), m.slice(m.indexOf(' ') + 1)];
    assert.ok(a in vocab && b in vocab && a + b in vocab, m);
  }
  assert.deepEqual(t.tokenizer.post_processor.processors[1].special_tokens['<|begin_of_text|>'].ids, [49147]);
  assert.equal(t.tokenizerConfig.added_tokens_decoder['49151'].content, '<|eot_id|>');
  // A vocabulary as large as the real one keeps it whole.
  const q = buildTokenizer('qwen3', 151936, 40960);
  assert.equal(q.idOf('<|im_end|>'), 151645);
  assert.equal(q.tokenizer.added_tokens.length, 26);
  assert.throws(() => buildTokenizer('qwen3', 200, 100), /vocab_size 200 is too small for a byte-level tokenizer/);
});

test('make-model CLI: writes a folder and rejects bad arguments', async () => {
  const out: string[] = [];
  const ctx = { out: (s: string) => void out.push(s), err: () => {}, signal: new AbortController().signal };
  const dir = join(root, 'cli');
  assert.equal(await makeModelCommand.run(['--shape', 'tiny-llama', '--seed', '5', '--out', dir], ctx), 0);
  assert.match(out.join(''), /tiny-llama \(LlamaForCausalLM\), 0\.14M parameters, float32, seed 5/);
  assert.ok(loadModelFolder(dir).config.tieWordEmbeddings === false);
  await assert.rejects(
    makeModelCommand.run(['--shape', 'tiny-llama', '--out', dir], ctx),
    /is not empty \(use --force/,
  );
  assert.equal(
    await makeModelCommand.run(['--shape', 'tiny-llama', '--out', dir, '--force', '--dtype', 'bfloat16'], ctx),
    0,
  );
  const bad = async (args: string[], re: RegExp) =>
    assert.rejects(makeModelCommand.run(args, ctx), (e: unknown) => e instanceof UsageError && re.test(e.message));
  await bad(['--out', dir], /--shape is required/);
  await bad(['--shape', 'gpt2', '--out', dir], /unknown --shape 'gpt2' \(one of smollm2-135m, /);
  await bad(['--shape', 'tiny-llama'], /--out DIR is required/);
  await bad(['--shape', 'tiny-llama', '--out', dir, '--seed', '1.5'], /--seed must be a whole number/);
  await bad(['--shape', 'tiny-llama', '--out', dir, '--dtype', 'int8'], /--dtype must be float32, float16 or bfloat16/);
  await bad(['--shape', 'tiny-llama', '--out', dir, '--bogus'], /Unknown option '--bogus'/);
  assert.match(makeModelCommand.usage, /qwen3-0\.6b/);
});

test('make-model: the real shapes have their published parameter counts', () => {
  // Counted from the weight plan, tied embeddings once; the Hugging Face model cards' figures.
  const count = (name: string) =>
    weightPlan(MODEL_SHAPES[name]).reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0);
  assert.equal(count('qwen2.5-1.5b'), 1_543_714_304);
  assert.equal(count('qwen2.5-0.5b'), 494_032_768);
  assert.equal(count('llama3.2-1b'), 1_235_814_400);
  const q = MODEL_SHAPES['qwen2.5-1.5b'];
  assert.deepEqual(
    [q.hiddenSize, q.numLayers, q.numHeads, q.numKvHeads, q.intermediateSize, q.vocabSize, q.ropeTheta],
    [1536, 28, 12, 2, 8960, 151936, 1000000],
  );
  assert.equal(q.tieWordEmbeddings, true);
  assert.ok(weightPlan(q).some((w) => w.name === 'model.layers.0.self_attn.q_proj.bias'));
});
