// Adapters in the PEFT layout: write/read round trip, adapters written by the PyTorch reference
// load, bad adapters are refused by name, and a merged model equals base + adapter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Backend } from '../../../src/engine/backend';
import { loadModelFolder } from '../../../src/engine/models/folder';
import { CausalLM } from '../../../src/engine/models/model';
import { readAdapter, writeAdapter } from '../../../src/engine/lora/peft';
import { mergeAdapter } from '../../../src/engine/lora/merge';
import { SafetensorsFile } from '../../../src/engine/models/safetensors';

const fixtures = resolve(__dirname, '..', '..', '..', 'test', 'fixtures');
const modelDir = join(fixtures, 'models', 'tiny-qwen2');
const adapterDir = join(fixtures, 'reference', 'tiny-qwen2-lora');

test('an adapter written by the PyTorch reference reads back and round-trips byte for byte', () => {
  const cfg = loadModelFolder(modelDir, { requireTokenizer: false }).config;
  const a = readAdapter(adapterDir, cfg);
  assert.equal(a.spec.rank, 4);
  assert.equal(a.spec.targets.length, 8);
  const dir = mkdtempSync(join(tmpdir(), 'dd-peft-'));
  try {
    writeAdapter(join(dir, 'copy'), cfg, a, { baseModel: 'tiny-qwen2' });
    const conf = JSON.parse(readFileSync(join(dir, 'copy', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(conf.peft_type, 'LORA');
    assert.equal(conf.r, 4);
    assert.equal(conf.lora_alpha, 8);
    assert.deepEqual(conf.target_modules, [
      'q_proj',
      'k_proj',
      'v_proj',
      'o_proj',
      'gate_proj',
      'up_proj',
      'down_proj',
      'lm_head',
    ]);
    const x = SafetensorsFile.open(join(adapterDir, 'adapter_model.safetensors'));
    const y = SafetensorsFile.open(join(dir, 'copy', 'adapter_model.safetensors'));
    assert.deepEqual(y.names().sort(), x.names().sort());
    for (const n of x.names()) assert.deepEqual(y.float32(n), x.float32(n), n);
    assert.ok(x.names().includes('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'));
    x.close();
    y.close();
    assert.ok(!existsSync(join(dir, 'copy.tmp-' + process.pid)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unsupported or mismatched adapters are refused with the reason', () => {
  const cfg = loadModelFolder(modelDir, { requireTokenizer: false }).config;
  const dir = mkdtempSync(join(tmpdir(), 'dd-peft-'));
  try {
    const conf = JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    const writeConf = (o: Record<string, unknown>) =>
      writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...conf, ...o }));
    writeConf({ use_dora: true });
    assert.throws(() => readAdapter(dir, cfg), /DoRA adapters are not supported/);
    writeConf({ target_modules: ['q_proj', 'c_attn'] });
    assert.throws(() => readAdapter(dir, cfg), /target module "c_attn" is not supported/);
    writeConf({});
    assert.throws(() => readAdapter(dir, cfg), /no adapter_model.safetensors/);
    writeConf({ r: 8 });
    writeFileSync(join(dir, 'adapter_model.safetensors'), readFileSync(join(adapterDir, 'adapter_model.safetensors')));
    assert.throws(() => readAdapter(dir, cfg), /has shape \[4, 64\], expected \[8, 64\]/);
    assert.throws(() => readAdapter(join(dir, 'none'), cfg), /no adapter_config.json/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('merging writes a model whose logits equal base + adapter', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dd-merge-'));
  try {
    const out = join(dir, 'merged');
    const r = mergeAdapter(modelDir, adapterDir, out);
    assert.equal(r.merged, 7 * 2 + 1); // 7 modules × 2 layers + lm_head
    assert.throws(() => mergeAdapter(modelDir, adapterDir, out), /exists/);
    const be = await Backend.create({ device: 'cpu', threads: 1 });
    const base = loadModelFolder(modelDir, { requireTokenizer: false });
    const merged = loadModelFolder(out, { requireTokenizer: false });
    const m1 = CausalLM.fromWeights(base.config, base.weights, be, { id: 'merge-base' });
    const m2 = CausalLM.fromWeights(merged.config, merged.weights, be, { id: 'merge-merged' });
    const adapter = readAdapter(adapterDir, base.config);
    const ids = [[5, 17, 300, 42, 9, 100, 7]];
    const a = (await m1.score(ids, adapter))[0]!;
    const b = (await m2.score(ids))[0]!;
    let worst = 0;
    for (let i = 1; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    console.log(`merged vs base + adapter: max log-prob difference ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-4, `${worst}`);
    await be.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
