// Example documents of the micro-world about held-out people (never subjects in the demo model's
// training), with their ground-truth facts, for the demo and the tests.
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { writeAtomic, writeJson } from '../pipeline/runFolder';
import { makeEntity, makeVocab, renderDoc, renderPeopleDoc, type Entity } from './world';
import { Rng } from '../common/rng';

export const HELD_OUT_PEOPLE = 300;

export interface ExampleFacts {
  seed: number;
  /** One entry per person: a file about several people has an entry for each. */
  docs: { file: string; entity: Entity }[];
  /** Held-out people with facts that are in no document: questions about them must stay unknown. */
  unknown: Entity[];
}

/**
 * Writes `count` documents (5–8 facts each) into `dir` and the facts beside it (dir/../facts.json);
 * then `multiFiles` documents about 2–4 people each, under `##` headings (made after the others,
 * so that adding them changes none of the single-person documents nor the unknown people).
 */
export function writeExampleDocs(dir: string, count: number, seed: number, multiFiles = 0): string[] {
  const vocab = makeVocab(seed);
  const pool = vocab.people.slice(vocab.people.length - HELD_OUT_PEOPLE);
  const rng = new Rng(seed * 104729 + count);
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
  let next = count + 20;
  for (let i = 0; i < multiFiles; i++) {
    const k = 2 + (i % 3);
    const es = names.slice(next, next + k).map((n) => makeEntity(n, 3 + rng.int(4), vocab, rng));
    next += k;
    if (es.length < k)
      throw new Error(
        `the demo world has too few people for ${count} documents and ${multiFiles} about several people`,
      );
    const file = `${es.map((e) => e.name.toLowerCase()).join('-')}.md`;
    writeAtomic(join(dir, file), renderPeopleDoc(es, rng));
    for (const entity of es) docs.push({ file, entity });
  }
  writeJson(join(dirname(resolve(dir)), 'facts.json'), { seed, docs, unknown } satisfies ExampleFacts);
  return [...new Set(docs.map((d) => join(dir, d.file)))];
}
