// loadModelFolder: a valid folder (single file and sharded) loads; each kind of broken folder fails
// with one message that names the file and what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, unlinkSync, readFileSync, readdirSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModelFolder, expectedTensors } from '../../../src/engine/models/folder';
import { ModelError } from '../../../src/engine/models/config';
import { makeModel } from '../../../src/tools/makeModel';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../../src/engine/models/safetensors';

const root = mkdtempSync(join(tmpdir(), 'dd-folder-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

const base = join(root, 'base');
makeModel({ shape: 'tiny-qwen2', seed: 3, out: base });
let n = 0;
/** A fresh copy of the valid tiny-qwen2 folder to break. */
function copy(): string {
  const d = join(root, `c${n++}`);
  cpSync(base, d, { recursive: true });
  return d;
}

/** Rewrites model.safetensors through `edit` (drop or replace tensors). */
function rewrite(dir: string, edit: (ts: TensorToWrite[]) => TensorToWrite[]): void {
  const p = join(dir, 'model.safetensors');
  const f = SafetensorsFile.open(p);
  const ts: TensorToWrite[] = f.names().map((name) => ({ name, ...f.info(name), data: f.bytes(name) }));
  f.close();
  writeSafetensors(p, edit(ts));
}

function fails(dir: string, re: RegExp): string {
  let msg = '';
  assert.throws(
    () => loadModelFolder(dir),
    (e: unknown) => {
      assert.ok(e instanceof ModelError, `expected a ModelError, got ${String(e)}`);
      msg = e.message;
      assert.match(e.message, re);
      return true;
    },
  );
  return msg;
}

test('loadModelFolder: a made model loads with its config, generation defaults and weights', () => {
  const m = loadModelFolder(base);
  try {
    assert.equal(m.config.architecture, 'Qwen2ForCausalLM');
    assert.equal(m.config.qkvBias, true);
    assert.deepEqual(m.generation, {
      eosTokenIds: [509, 507],
      bosTokenId: 507,
      padTokenId: 507,
      doSample: true,
      temperature: 0.7,
      topP: 0.8,
      topK: 20,
    });
    assert.equal(m.weights.names().length, expectedTensors(m.config).length);
    assert.ok(m.weights.has('model.layers.1.self_attn.v_proj.bias'));
    assert.deepEqual(m.weights.info('model.layers.0.mlp.down_proj.weight'), { dtype: 'F32', shape: [64, 128] });
    const norm = m.weights.float32('model.norm.weight');
    assert.equal(norm.length, 64);
    assert.equal(m.weights.bytes('model.norm.weight').length, 256);
  } finally {
    m.weights.close();
  }
});

test('loadModelFolder: missing folder, config, tokenizer or weights', () => {
  fails(join(root, 'nope'), /nope: model folder not found/);
  let d = copy();
  unlinkSync(join(d, 'config.json'));
  fails(d, /config\.json is missing/);
  d = copy();
  writeFileSync(join(d, 'config.json'), '{"architectures": [');
  fails(d, /config\.json: not valid JSON/);
  d = copy();
  writeFileSync(
    join(d, 'config.json'),
    JSON.stringify({
      ...JSON.parse(readFileSync(join(base, 'config.json'), 'utf8')),
      architectures: ['PhiForCausalLM'],
      model_type: 'phi',
    }),
  );
  fails(d, /config\.json: architecture "PhiForCausalLM" is not supported \(supported: LlamaForCausalLM/);
  d = copy();
  unlinkSync(join(d, 'tokenizer.json'));
  fails(d, /tokenizer\.json is missing/);
  writeFileSync(join(d, 'tokenizer.model'), '');
  fails(d, /tokenizer\.json is missing \(only tokenizer\.model.*SentencePiece/);
  d = copy();
  unlinkSync(join(d, 'model.safetensors'));
  fails(d, /no weights: expected model\.safetensors or model\.safetensors\.index\.json/);
  writeFileSync(join(d, 'pytorch_model.bin'), '');
  fails(d, /pickle.*convert the model to safetensors/);
  d = copy();
  writeFileSync(join(d, 'generation_config.json'), JSON.stringify({ top_p: 3 }));
  fails(d, /generation_config\.json: "top_p" must be between 0 and 1/);
  d = copy();
  writeFileSync(join(d, 'model.safetensors'), readFileSync(join(base, 'model.safetensors')).subarray(0, 5000));
  fails(d, /model\.safetensors: .*truncated/);
});

test('loadModelFolder: missing and mis-shaped tensors are listed in one error', () => {
  let d = copy();
  rewrite(d, (ts) => ts.filter((t) => !t.name.includes('q_proj.bias') && t.name !== 'model.norm.weight'));
  const msg = fails(
    d,
    /the weights do not match config\.json \(Qwen2ForCausalLM, 2 layers\): model\.layers\.0\.self_attn\.q_proj\.bias is missing; model\.layers\.1\.self_attn\.q_proj\.bias is missing; model\.norm\.weight is missing$/,
  );
  assert.ok(msg.includes(d));
  d = copy();
  rewrite(d, (ts) => ts.map((t) => (t.name === 'model.layers.1.mlp.up_proj.weight' ? { ...t, shape: [64, 128] } : t)));
  fails(d, /model\.layers\.1\.mlp\.up_proj\.weight has shape \[64, 128\], expected \[128, 64\]/);
  d = copy();
  rewrite(d, (ts) => ts.filter((t) => !t.name.startsWith('model.layers.1.')));
  fails(
    d,
    /config\.json says num_hidden_layers is 2 but the weights hold 1 layer \(model\.layers\.0\): the config does not belong to these weights, or the weights are incomplete$/,
  );
  d = copy();
  rewrite(d, (ts) => ts.map((t) => (t.name === 'model.norm.weight' ? { ...t, dtype: 'I32' as const } : t)));
  fails(d, /model\.norm\.weight has dtype I32, expected F32, F16 or BF16/);
});

test('loadModelFolder: sharded weights load like a single file; broken indexes fail clearly', () => {
  const sharded = join(root, 'sharded');
  makeModel({ shape: 'tiny-qwen2', seed: 3, out: sharded, maxShardBytes: 100_000 });
  const files = readdirSync(sharded)
    .filter((f) => f.endsWith('.safetensors'))
    .sort();
  assert.ok(files.length >= 3, `several shards: ${files.join(', ')}`);
  assert.match(files[0]!, /^model-00001-of-0000\d\.safetensors$/);
  const a = loadModelFolder(base);
  const b = loadModelFolder(sharded);
  try {
    assert.deepEqual(b.weights.names().sort(), a.weights.names().sort());
    for (const name of a.weights.names()) assert.deepEqual(b.weights.bytes(name), a.weights.bytes(name), name);
  } finally {
    a.weights.close();
    b.weights.close();
  }
  const idx = JSON.parse(readFileSync(join(sharded, 'model.safetensors.index.json'), 'utf8'));
  assert.equal(typeof idx.metadata.total_size, 'number');

  let d = join(root, 'sh1');
  cpSync(sharded, d, { recursive: true });
  unlinkSync(join(d, files[1]!));
  fails(
    d,
    new RegExp(`index\\.json: shard ${files[1]} \\(holding \\d+ tensors, e\\.g\\. model\\.layers.*\\) is missing`),
  );
  d = join(root, 'sh2');
  cpSync(sharded, d, { recursive: true });
  const moved = { ...idx, weight_map: { ...idx.weight_map, 'model.norm.weight': files[0] } };
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(moved));
  fails(d, new RegExp(`${files[0]}: does not contain 1 tensor\\(s\\) the index assigns to it: model\\.norm\\.weight`));
  writeFileSync(
    join(d, 'model.safetensors.index.json'),
    JSON.stringify({ ...idx, weight_map: { ...idx.weight_map, x: '../evil.safetensors' } }),
  );
  fails(d, /weight_map\["x"\] must name a \.safetensors file in the same folder/);
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: {} }));
  fails(d, /no "weight_map" object/);
});
