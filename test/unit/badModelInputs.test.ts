// Bad model-side inputs (issue 18: items 4, 5, 6, 8, 11, 12), each built in a temporary folder and
// given to the engine or to the docdistill command as a user would. Each must end in an error that
// names the cause and the file, quickly, with nothing written outside the run's folder and no
// temporary files left behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { Tokenizer } from '../../src/engine/tokenizer';
import { parseConfig } from '../../src/engine/models/config';
import { readAdapter, writeAdapter } from '../../src/engine/lora/peft';
import { downloadFromHub } from '../../src/host/hub';

const bin = resolve(__dirname, '..', '..', 'bin', 'docdistill.js');
let root: string;
let model: string;
let adapter: string;

/**
 * Every path under `dir` with its size (folders end in /). The models' weight cache (under HOME,
 * which these tests put inside `dir`: packs and graphs, written atomically, safe to delete) is a
 * cache, not a leftover; only temporary files in it would be.
 */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (p.includes(join('.cache', 'docdistill')) && !n.includes('.tmp-')) {
        if (statSync(p).isDirectory()) walk(p);
        continue;
      }
      const st = statSync(p);
      if (st.isDirectory()) {
        out.push(`${relative(dir, p)}/`);
        walk(p);
      } else out.push(`${relative(dir, p)} ${st.size}`);
    }
  };
  walk(dir);
  return out;
}

/** Runs docdistill in `root` with HOME and TMPDIR inside it, so any stray write shows up in the snapshot. */
function cli(...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, HOME: join(root, 'home'), TMPDIR: join(root, 'tmp'), DOCDISTILL_DEBUG: '' },
  });
}

/** The command fails with exit 1 or 2, says `re`, in under `ms`, and leaves the folder as it was. */
function refused(args: string[], re: RegExp, ms = 20_000): string {
  const before = snapshot(root);
  const t0 = Date.now();
  const r = cli(...args);
  const took = Date.now() - t0;
  assert.ok(
    r.status === 1 || r.status === 2,
    `exit ${r.status} (signal ${r.signal}) for ${args.join(' ')}\n${r.stdout}\n${r.stderr}`,
  );
  assert.match(r.stderr, re);
  assert.ok(took < ms, `took ${took} ms`);
  assert.deepEqual(snapshot(root), before, 'nothing was written or left behind');
  return r.stderr;
}

/** A copy of the model folder with `edit` applied to one of its JSON files. */
function modelWith(name: string, file: string, edit: (j: Record<string, unknown>) => void): string {
  const dir = join(root, name);
  cpSync(model, dir, { recursive: true });
  const j = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown>;
  edit(j);
  writeFileSync(join(dir, file), JSON.stringify(j));
  return dir;
}

/** Overwrites float32 value `index` of tensor `tensor` (matched by substring) in a safetensors file. */
function poison(file: string, tensor: string, value: number, index = 0): string {
  const b = readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; data_offsets: [number, number] }
  >;
  const name = Object.keys(header).find((k) => k.includes(tensor))!;
  assert.equal(header[name]!.dtype, 'F32');
  b.writeFloatLE(value, 8 + n + header[name]!.data_offsets[0] + 4 * index);
  writeFileSync(file, b);
  return name;
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'dd-bad-model-'));
  mkdirSync(join(root, 'home'));
  mkdirSync(join(root, 'tmp'));
  model = join(root, 'm');
  let r = cli('make-model', '--shape', 'tiny-qwen2', '--seed', '3', '--out', model);
  assert.equal(r.status, 0, r.stderr);
  writeFileSync(
    join(root, 'pairs.jsonl'),
    JSON.stringify({ teacher: 'Doc: the sky is green. Q: sky colour?', student: 'Q: sky colour?', answer: 'Green.' }) +
      '\n',
  );
  adapter = join(root, 'ad');
  r = cli(
    'train',
    '--model',
    model,
    '--data',
    join(root, 'pairs.jsonl'),
    '--out',
    adapter,
    '--epochs',
    '1',
    '--rank',
    '4',
    '--lr',
    '1e-2',
    '--device',
    'cpu',
  );
  assert.equal(r.status, 0, r.stderr);
});

after(() => rmSync(root, { recursive: true, force: true }));

test('item 4: a chat template that loops or grows without end is stopped, naming tokenizer_config.json', async () => {
  const dir = modelWith(
    't4',
    'tokenizer_config.json',
    (j) => (j.chat_template = '{% for i in range(100000000) %}x{% endfor %}'),
  );
  refused(
    ['generate', '--model', dir, '--prompt', 'hi', '--chat', '--max-tokens', '2', '--device', 'cpu'],
    /t4[/\\]tokenizer_config\.json: the chat template was stopped: range\(\) of 100000000 items is longer than \d+\. A chat template needs only a few thousand steps; fix or replace the template/,
  );
  // Other ways to spin or grow, each stopped by one of the limits within a few seconds.
  const cases: [string, RegExp][] = [
    [
      '{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}',
      /more than \d+ evaluation steps|ran for more than 2 s/,
    ],
    [
      "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
      /built a text of \d+ characters \(the limit is \d+\)/,
    ],
    [
      '{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}',
      /built a list of \d+ items/,
    ],
    ["{{ 'a\\nb' | indent(500000000) }}", /indent\(500000000\) is wider than 1000/],
    ["{% set w = 400000000 %}{{ 'a\\nb' | indent(width=w) }}", /indent\(400000000\) is wider than 1000/],
  ];
  for (const [template, re] of cases) {
    writeFileSync(
      join(dir, 'tokenizer_config.json'),
      JSON.stringify({
        ...JSON.parse(readFileSync(join(model, 'tokenizer_config.json'), 'utf8')),
        chat_template: template,
      }),
    );
    const tok = await Tokenizer.fromFolder(dir);
    const t0 = Date.now();
    assert.throws(
      () => tok.applyChatTemplate([{ role: 'user', content: 'hi' }]),
      (e: Error) => {
        assert.match(e.message, /tokenizer_config\.json: the chat template was stopped: /);
        assert.match(e.message, re);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 10_000, `${template}: ${Date.now() - t0} ms`);
  }
  // The model's own template still renders, and long messages may make long prompts.
  const tok = await Tokenizer.fromFolder(model);
  const long = 'word '.repeat(400_000);
  assert.ok(tok.applyChatTemplate([{ role: 'user', content: long }], { addGenerationPrompt: true }).includes(long));
});

test('item 5: absurd config sizes are refused by name before anything is allocated', () => {
  const huge = modelWith('c5', 'config.json', (j) => (j.num_hidden_layers = 1e9));
  refused(
    ['score', '--model', huge, '--text', 'hi', '--device', 'cpu'],
    /c5[/\\]config\.json: "num_hidden_layers" is 1000000000, more than any real model has \(at most 1024 is accepted\)/,
    10_000,
  );
  const more = modelWith('c5b', 'config.json', (j) => (j.num_hidden_layers = 700));
  refused(
    ['score', '--model', more, '--text', 'hi', '--device', 'cpu'],
    /c5b: config\.json says num_hidden_layers is 700 but the weights hold 2 layers \(model\.layers\.0 to 1\): the config does not belong to these weights/,
  );
  const wide = modelWith('c5c', 'config.json', (j) => (j.vocab_size = 600));
  refused(
    ['score', '--model', wide, '--text', 'hi', '--device', 'cpu'],
    /c5c: config\.json says vocab_size 600 and hidden_size 64 but model\.embed_tokens\.weight has shape \[512, 64\]/,
  );
  const cfg = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')) as Record<string, unknown>;
  for (const [k, v] of [
    ['vocab_size', 2 ** 40],
    ['hidden_size', 1e7],
    ['intermediate_size', 1e8],
    ['num_attention_heads', 1e6],
    ['head_dim', 1e6],
    ['max_position_embeddings', 1e12],
  ] as const) {
    assert.throws(
      () => parseConfig({ ...cfg, [k]: v }, 'x/config.json'),
      new RegExp(`^ModelError: x/config\\.json: "${k}" is ${v}, more than any real model has`),
    );
  }
});

test('item 6: non-finite weights make score and generate fail naming the file; absurd adapters are refused', () => {
  const nan = join(root, 'nan');
  cpSync(model, nan, { recursive: true });
  const t = poison(join(nan, 'model.safetensors'), 'layers.1.mlp.up_proj', NaN);
  const re = new RegExp(
    `the model's output \\((score|generate)\\) is NaN or infinite because .*nan[/\\\\]model\\.safetensors holds non-finite weights \\(${t.replace(/\./g, '\\.')}: 1 of \\d+ values are NaN or ±Inf\\): the file is corrupt`,
  );
  refused(['score', '--model', nan, '--text', 'Hello world', '--json', '--device', 'cpu'], re);
  refused(['generate', '--model', nan, '--prompt', 'Hello', '--max-tokens', '3', '--device', 'cpu'], re);

  const adNan = join(root, 'ad-nan');
  cpSync(adapter, adNan, { recursive: true });
  const k = poison(join(adNan, 'adapter_model.safetensors'), 'q_proj.lora_B', Infinity, 3);
  refused(
    ['score', '--model', model, '--adapter', adNan, '--text', 'hi', '--device', 'cpu'],
    new RegExp(
      `ad-nan[/\\\\]adapter_model\\.safetensors: ${k.replace(/\./g, '\\.')} holds NaN or infinite values: the adapter is corrupt`,
    ),
  );

  const adAlpha = join(root, 'ad-alpha');
  cpSync(adapter, adAlpha, { recursive: true });
  const ac = JSON.parse(readFileSync(join(adAlpha, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(adAlpha, 'adapter_config.json'), JSON.stringify({ ...ac, lora_alpha: 1e38 }));
  refused(
    ['generate', '--model', model, '--adapter', adAlpha, '--prompt', 'hi', '--device', 'cpu'],
    /ad-alpha[/\\]adapter_config\.json: lora_alpha 1e\+38 with r 4 scales the update by 2\.50e\+37, which is absurd/,
  );
  refused(
    ['merge', '--model', model, '--adapter', adAlpha, '--out', join(root, 'merged-alpha')],
    /lora_alpha 1e\+38 .* is absurd/,
  );

  // Finite but huge values: the merged weights would be meaningless (|w| ~ 1e33).
  const adHuge = join(root, 'ad-huge');
  cpSync(adapter, adHuge, { recursive: true });
  poison(join(adHuge, 'adapter_model.safetensors'), 'layers.0.mlp.down_proj.lora_B', 1e30);
  poison(join(adHuge, 'adapter_model.safetensors'), 'layers.0.mlp.down_proj.lora_A', 1);
  const huge =
    /ad-huge[/\\]adapter_model\.safetensors: the update of model\.layers\.0\.mlp\.down_proj could reach 8\.00e\+30 \(scale 2\.00 × r 4 × max\|A\| 1\.00 × max\|B\| 1\.00e\+30\), far beyond any model weight/;
  refused(['merge', '--model', model, '--adapter', adHuge, '--out', join(root, 'merged-huge')], huge);
  assert.throws(
    () => readAdapter(adHuge, parseConfig(JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')), 'config.json')),
    huge,
  );
});

test('item 8: a refused merge or adapter save leaves no temporary folder', () => {
  const out = join(root, 'merged-nan');
  const nan = join(root, 'nan8');
  cpSync(model, nan, { recursive: true });
  poison(join(nan, 'model.safetensors'), 'model.norm', Infinity);
  refused(
    ['merge', '--model', nan, '--adapter', adapter, '--out', out],
    /refusing to merge: model\.norm\.weight would have a non-finite value: the model's model\.norm\.weight already holds NaN or infinite values \(.*nan8 is corrupt\); nothing was written/,
  );
  assert.ok(!existsSync(out));
  // The engine's adapter writer refuses non-finite tensors before it creates anything.
  const cfg = parseConfig(JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')), 'config.json');
  const a = readAdapter(adapter, cfg);
  a.tensors.values().next().value![0] = NaN;
  const before = snapshot(root);
  assert.throws(() => writeAdapter(join(root, 'ad-out'), cfg, a), /refusing to save: lora\.\S+ has a non-finite value/);
  assert.deepEqual(snapshot(root), before);
});

test('item 11: train refuses pairs longer than the context and names a line with a bad weight', () => {
  const long = join(root, 'long.jsonl');
  const doc = Array.from({ length: 3000 }, (_, i) => `word${i}`).join(' ');
  writeFileSync(
    long,
    [
      JSON.stringify({ teacher: 'Q?', student: 'Q?', answer: 'A' }),
      JSON.stringify({ teacher: `Doc: ${doc} Q: x?`, student: 'Q: x?', answer: 'y' }),
    ].join('\n'),
  );
  refused(
    ['train', '--model', model, '--data', long, '--out', join(root, 'ad11'), '--device', 'cpu'],
    /long\.jsonl:2: the teacher prompt with the answer is \d+ tokens, longer than the model's context of 2048: shorten the prompt \(split the document into smaller chunks\) or the answer/,
  );
  const weights = join(root, 'weights.jsonl');
  writeFileSync(
    weights,
    [
      JSON.stringify({ teacher: 'T', student: 'S', answer: 'A', weight: 2 }),
      JSON.stringify({ teacher: 'T', student: 'S', answer: 'A', weight: 'heavy' }),
    ].join('\n'),
  );
  refused(
    ['train', '--model', model, '--data', weights, '--out', join(root, 'ad11'), '--device', 'cpu'],
    /weights\.jsonl:2: "weight" must be a non-negative number, got "heavy"/,
  );
  rmSync(long);
  rmSync(weights);
});

test('item 12: hub files listed without a size or hash are refused before anything is written', async () => {
  const files: Record<string, Buffer> = {
    'config.json': Buffer.from('{"architectures":["LlamaForCausalLM"]}'),
    'tokenizer.json': Buffer.from('{}'),
    'model.safetensors': Buffer.alloc(1000, 5),
  };
  const blobId = (d: Buffer) => createHash('sha1').update(`blob ${d.length}\0`).update(d).digest('hex');
  let listing: Record<string, unknown>[] = [];
  const served: string[] = [];
  const server: Server = createServer((req, res) => {
    const url = req.url ?? '';
    if (url.startsWith('/api/models/acme/tiny/')) return void res.end(JSON.stringify({ siblings: listing }));
    const m = /^\/acme\/tiny\/resolve\/main\/(.+)$/.exec(url);
    served.push(m?.[1] ?? url);
    res.end(m ? files[m[1]!] : undefined);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const dest = join(root, 'hub', 'acme--tiny');
  try {
    const lfs = {
      rfilename: 'model.safetensors',
      size: 1000,
      lfs: { sha256: createHash('sha256').update(files['model.safetensors']!).digest('hex'), size: 1000 },
    };
    listing = [{ rfilename: 'config.json' }, { rfilename: 'tokenizer.json', size: 2 }, { ...lfs, lfs: { size: 1000 } }];
    await assert.rejects(
      downloadFromHub('acme/tiny', dest, { endpoint }),
      /acme\/tiny: http:\/\/127\.0\.0\.1:\d+ lists config\.json \(no size\), tokenizer\.json \(no hash\), model\.safetensors \(no sha256\): refusing to download files that cannot be verified/,
    );
    assert.ok(!existsSync(join(root, 'hub')) && served.length === 0, 'nothing downloaded or written');
    // With sizes and hashes it downloads; a file whose git blob id does not match is removed.
    listing = [
      { rfilename: 'config.json', size: files['config.json']!.length, blobId: blobId(files['config.json']!) },
      { rfilename: 'tokenizer.json', size: 2, blobId: blobId(Buffer.from('{]')) },
      lfs,
    ];
    await assert.rejects(
      downloadFromHub('acme/tiny', dest, { endpoint }),
      /tokenizer\.json: checksum mismatch \(git blob id [0-9a-f]{12}… ≠ [0-9a-f]{12}…\); the partial file was removed/,
    );
    assert.ok(!existsSync(join(dest, 'tokenizer.json')) && !existsSync(join(dest, 'tokenizer.json.part')));
    listing[1] = { rfilename: 'tokenizer.json', size: 2, blobId: blobId(files['tokenizer.json']!) };
    assert.deepEqual((await downloadFromHub('acme/tiny', dest, { endpoint })).sort(), [
      'config.json',
      'model.safetensors',
      'tokenizer.json',
    ]);
    assert.deepEqual(readdirSync(dest).sort(), ['config.json', 'model.safetensors', 'tokenizer.json']);
  } finally {
    server.close();
    rmSync(join(root, 'hub'), { recursive: true, force: true });
  }
});
