// Phase 1, ingest: the Markdown files (and, when distilling into an existing adapter, its earlier
// sources) read and cut into chunks of at most the chunk budget, written to chunks.jsonl.
import { relative } from 'node:path';
import { chunkMarkdown, IngestError, type Chunk } from '../ingest';
import { collectMarkdown, readDocument, recordedSources } from '../docFiles';
import { readAdapterInfo } from '../adapters';
import { writeJsonl } from '../runFolder';
import { check, chunkBudget, chunkMinTokens, log, type RunContext } from './context';

export async function ingest(run: RunContext): Promise<void> {
  const { req } = run;
  // Distilling into an existing adapter adds to what it knows: its earlier sources (those that
  // still exist) are read again, so unchanged passages are recognised and replayed.
  const earlier = run.state.baseAdapter
    ? recordedSources(
        readAdapterInfo(run.state.baseAdapter)?.chunks,
        req.root,
        (m) => log(run, m, 'warn'),
        `adapter ${req.name}`,
      )
    : [];
  const files = collectMarkdown([...req.inputs, ...earlier], req.root, (m) => log(run, m, 'warn'));
  if (!files.length) throw new IngestError(`no Markdown files in ${req.inputs.join(', ')}`);
  const tok = run.model.tokenizer;
  const chunks: Chunk[] = [];
  const budget = chunkBudget(run.model, run.s);
  for (const f of files) {
    check(run);
    const source = relative(req.root, f).split('\\').join('/');
    try {
      const md = await readDocument(req.root, f, () => check(run));
      const cs = chunkMarkdown(source, md, {
        maxTokens: budget,
        minTokens: chunkMinTokens(run.s),
        countTokens: (t) => tok.encode(t, { addSpecialTokens: false }).length,
      });
      if (!cs.length) log(run, `${source}: empty, nothing to learn`, 'warn');
      for (const c of cs)
        if (c.tokens > budget)
          log(
            run,
            `${source}: a passage of ${c.tokens} tokens could not be split below ${budget} (one very long word or line); it is kept whole`,
            'warn',
          );
      chunks.push(...cs);
    } catch (e) {
      if (e instanceof IngestError) log(run, `${e.message} — skipped`, 'warn');
      else throw e;
    }
    run.emit({ type: 'progress', phase: 'ingest', done: chunks.length, total: chunks.length });
  }
  if (!chunks.length) throw new IngestError('no usable text in the given documents');
  const known = new Set(run.state.knownHashes ?? []);
  const fresh = chunks.filter((c) => !known.has(c.hash));
  if (known.size)
    log(run, `${chunks.length} chunks, ${fresh.length} new or changed since adapter ${req.name} was trained`);
  else log(run, `${chunks.length} chunks from ${files.length} file(s)`);
  writeJsonl(run.paths.chunks, chunks);
}
