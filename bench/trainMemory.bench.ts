// Peak memory of `docdistill train` at a real shape (`npm run bench -- trainMemory --shape
// llama3.2-1b [--quantize int8|int4] [--batch 4] [--steps 2]`): a random-weight model of that shape
// (make-model, float32), hand-written QA pairs whose teacher prompt holds a ≈ 600-token passage,
// LoRA rank 16, a few steps, in a child process under /usr/bin/time -v. Prints the child's own
// peak RSS (what train reports) and time's maximum resident set size, and the estimate the CLI
// warns from. Not part of CI: the 1B float32 model alone is 5 GB on disk.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { makeModel, MODEL_SHAPES } from '../src/tools/makeModel';
import { parseConfig } from '../src/engine/models/config';
import { estimateTrainMemory } from '../src/engine/train/memoryEstimate';
import type { BaseQuantization } from '../src/engine/models/quantize';
import { leanMallocEnv } from '../src/common/leanMalloc';

const arg = (name: string): string | undefined => process.argv.find((x) => x.startsWith(`--${name}=`))?.split('=')[1];
const shapeName = arg('shape');
const quantize = (arg('quantize') ?? 'none') as BaseQuantization;
const batch = Number(arg('batch') ?? 4);
const steps = Number(arg('steps') ?? 2);

const PASSAGE = Array(14)
  .fill(
    'The frobnicator service stores its state in the ledger directory, rotates the write-ahead log every sixty minutes, and refuses to start when the ledger is owned by another user; operators restore it from the nightly snapshot with the restore command.',
  )
  .join(' ');
const QA: [string, string][] = [
  ['Where does the frobnicator keep its state?', 'In the ledger directory.'],
  ['How often is the write-ahead log rotated?', 'Every sixty minutes.'],
  ['Why might the service refuse to start?', 'The ledger is owned by another user.'],
  ['How is the ledger restored?', 'From the nightly snapshot, with the restore command.'],
  ['What does the service rotate?', 'Its write-ahead log.'],
  ['When are snapshots taken?', 'Nightly.'],
  ['Who restores the ledger?', 'The operators.'],
  ['What is stored in the ledger directory?', "The service's state."],
];

function main() {
  if (!shapeName) {
    console.log('trainMemory: skipped (pass --shape NAME, e.g. --shape llama3.2-1b)');
    return;
  }
  if (!MODEL_SHAPES[shapeName])
    throw new Error(`unknown --shape '${shapeName}' (one of ${Object.keys(MODEL_SHAPES).join(', ')})`);
  const dir = `bench/out/models/${shapeName}`;
  if (!existsSync(`${dir}/config.json`)) {
    mkdirSync('bench/out/models', { recursive: true });
    makeModel({ shape: shapeName, seed: 0, out: dir, dtype: 'float32', force: true });
  }
  const work = `bench/out/train-memory-${shapeName}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const pairs = Array.from({ length: batch * steps }, (_, i) => {
    const [q, a] = QA[i % QA.length];
    return JSON.stringify({
      teacher: [
        { role: 'system', content: `Answer from this document:\n\n${PASSAGE}` },
        { role: 'user', content: q },
      ],
      student: q,
      answer: a,
    });
  });
  writeFileSync(`${work}/pairs.jsonl`, pairs.join('\n') + '\n');
  const cli = ['dist/cli.js', 'train', '--model', dir, '--data', `${work}/pairs.jsonl`, '--out', `${work}/adapter`];
  cli.push('--epochs', '1', '--batch-size', String(batch), '--rank', '16', '--quantize', quantize);
  const timeBin = existsSync('/usr/bin/time');
  const r = timeBin
    ? spawnSync('/usr/bin/time', ['-v', process.execPath, ...cli], {
        encoding: 'utf8',
        env: leanMallocEnv(process.env),
      })
    : spawnSync(process.execPath, cli, { encoding: 'utf8', env: leanMallocEnv(process.env) });
  const err = r.stderr ?? '';
  if (r.status !== 0) throw new Error(`train failed (${r.status}):\n${err.slice(-2000)}`);
  const own = /peak RSS ([\d.]+) GB/.exec(err)?.[1];
  const maxRes = /Maximum resident set size \(kbytes\): (\d+)/.exec(err)?.[1];
  const cpu = ['User time', 'System time'].map((k) => new RegExp(`${k} \\(seconds\\): ([\\d.]+)`).exec(err)?.[1]);
  const est = estimateTrainMemory(parseConfig(JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')), dir), {
    batchSize: batch,
    teacherTokens: 700,
    studentTokens: 30,
    answerTokens: 16,
    quantize,
  });
  const gb = (b: number) => (b / 2 ** 30).toFixed(2);
  console.log(`${shapeName}, ${quantize === 'none' ? 'float32' : quantize}, batch ${batch}, ${steps} steps, r16`);
  console.log(`  peak RSS (train's own):       ${own ?? '?'} GB`);
  if (maxRes) console.log(`  max resident (/usr/bin/time): ${(Number(maxRes) / 2 ** 20).toFixed(2)} GB`);
  if (cpu[0]) console.log(`  CPU time: user ${cpu[0]} s, system ${cpu[1]} s`);
  console.log(
    `  estimate: ${gb(est.totalBytes)} GB (weights ${gb(est.weightBytes)}, activations ${gb(est.activationBytes)})`,
  );
  rmSync(work, { recursive: true, force: true });
}

main();
