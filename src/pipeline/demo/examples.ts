// Example documents of the micro-world about held-out people (never subjects in the demo model's
// training), with their ground-truth facts, for the demo and the tests.
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { writeAtomic, writeJson } from '../runFolder';
import { WorldRng, makeEntity, makeVocab, renderDoc, type Entity } from './world';

export const HELD_OUT_PEOPLE = 300;

export interface ExampleFacts {
  seed: number;
  docs: { file: string; entity: Entity }[];
  /** Held-out people with facts that are in no document: questions about them must stay unknown. */
  unknown: Entity[];
}

/** Writes `count` documents (5–8 facts each) into `dir` and the facts beside it (dir/../facts.json). */
export function writeExampleDocs(dir: string, count: number, seed: number): string[] {
  const vocab = makeVocab(seed);
  const pool = vocab.people.slice(vocab.people.length - HELD_OUT_PEOPLE);
  const rng = new WorldRng(seed * 104729 + count);
  const names = rng.shuffle([...pool]);
  mkdirSync(dir, { recursive: true });
  const docs: ExampleFacts['docs'] = [];
  for (let i = 0; i < count; i++) {
    const e = makeEntity(names[i]!, 5 + rng.int(4), vocab, rng);
    const file = `${e.name.toLowerCase()}.md`;
    writeAtomic(join(dir, file), renderDoc(e, rng));
    docs.push({ file, entity: e });
  }
  const unknown = names.slice(count, count + 20).map((n) => makeEntity(n, 4, vocab, rng));
  writeJson(join(dirname(resolve(dir)), 'facts.json'), { seed, docs, unknown } satisfies ExampleFacts);
  return docs.map((d) => join(dir, d.file));
}
