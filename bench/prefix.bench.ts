// The answers phase's prefill with and without shared prefixes (Stepper.prefill): the teacher's
// prompts (system + passage + question) for P passages of about N tokens with Q questions each, in
// the answers phase's order and batches of 16, each answered with one token so that only the
// prefill is measured (the decode steps are the same either way). Prints prompt tokens, positions
// computed (deterministic) and the CPU time of each way.
// `npm run bench -- prefix --model DIR [--passage 600] [--passages 2] [--questions 12]`
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend } from '../src/engine/backend';
import { CausalLM } from '../src/engine/models/model';
import { generate, type GenerateTimings } from '../src/engine/generate';
import { teacherMessages } from '../src/pipeline/prompts';
import { makeModel } from '../src/tools/makeModel';
import { threadsArg } from './common';

const arg = (name: string, dflt: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;

async function main(): Promise<void> {
  let dir = arg('model', '');
  if (!dir) {
    dir = join(mkdtempSync(join(tmpdir(), 'dd-prefix-bench-')), 'm');
    makeModel({ shape: arg('shape', 'smollm2-135m'), seed: 1, out: dir, dtype: 'float32' });
  }
  const N = Number(arg('passage', '600'));
  const nPassages = Number(arg('passages', '2'));
  const Q = Number(arg('questions', '12'));
  const t0 = performance.now();
  const model = await CausalLM.load(dir, await Backend.create({ device: 'cpu', threads: threadsArg() }));
  console.log(`model ${dir}: loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const tok = model.tokenizer;
  // Passages of N tokens of the example docs' text.
  const text = readdirSync('examples/docs')
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => readFileSync(join('examples/docs', f), 'utf8'))
    .join('\n\n');
  let all = tok.encode(text, { addSpecialTokens: false });
  while (all.length < N * nPassages) all = [...all, ...all];
  const passages = Array.from({ length: nPassages }, (_, k) => tok.decode(all.slice(k * N, (k + 1) * N)));
  const asks = ['What does', 'Where does', 'When did', 'Which pet does', 'Who is the sibling of', 'Why does'];
  const prompts = passages.flatMap((p, k) =>
    Array.from({ length: Q }, (_, i) => {
      const q = `${asks[i % asks.length]} person ${k}-${i} ${i % 2 ? 'live, and what do they like best' : 'do'}?`;
      const ids = tok.encode(tok.applyChatTemplate(teacherMessages(p, q), { addGenerationPrompt: true }), {
        addSpecialTokens: false,
      });
      return ids;
    }),
  );
  const ways: Record<string, { tokens: number; shared: number; positions: number; cpuMs: number; wallMs: number }> = {};
  for (const share of [false, true, false, true]) {
    const w = { tokens: 0, shared: 0, positions: 0, cpuMs: 0, wallMs: 0 };
    const outs: number[][] = [];
    for (let i = 0; i < prompts.length; i += 16) {
      const c0 = process.cpuUsage();
      const w0 = performance.now();
      const res = await generate(model, prompts.slice(i, i + 16), {
        maxTokens: 1,
        stopTokens: [],
        sharePrefixes: share,
        onTimings: (t: GenerateTimings) => {
          w.tokens += t.prefillTokens;
          w.shared += t.prefixReusedTokens;
          w.positions += t.prefillPositions;
        },
      });
      const c = process.cpuUsage(c0);
      w.cpuMs += (c.user + c.system) / 1000;
      w.wallMs += performance.now() - w0;
      outs.push(...res.map((r) => r.ids));
    }
    // The second of each way is the one reported (the first warms the session up).
    ways[share ? 'shared' : 'plain'] = w;
    console.log(
      `${share ? 'shared' : 'plain '}: ${prompts.length} prompts (${nPassages} passages of ${N} tokens × ${Q} questions), ${w.tokens} prompt tokens, ${w.shared} shared, ${w.positions} positions computed; CPU ${(w.cpuMs / 1000).toFixed(1)} s, wall ${(w.wallMs / 1000).toFixed(1)} s; first tokens ${outs
        .map((o) => o[0])
        .join(',')
        .slice(0, 40)}…`,
    );
  }
  const a = ways.plain!,
    b = ways.shared!;
  console.log(
    `positions ${a.positions} → ${b.positions} (${(a.positions / b.positions).toFixed(2)}× fewer); CPU ${(a.cpuMs / 1000).toFixed(1)} s → ${(b.cpuMs / 1000).toFixed(1)} s (${(a.cpuMs / b.cpuMs).toFixed(2)}×)`,
  );
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
