// A model's tokenizer: a thin wrapper over @huggingface/tokenizers (tokenizer.json +
// tokenizer_config.json) and @huggingface/jinja (the chat template), with the special ids the
// engine needs and a streaming decoder that never emits half a UTF-8 character.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { Environment, Interpreter, Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface EncodeOptions {
  /** Add what the tokenizer adds by default (e.g. Llama 3's <|begin_of_text|>). Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, chat markers). Default false, as in transformers. */
  skipSpecialTokens?: boolean;
  /** Remove spaces before punctuation (" ." → "."). Default: tokenizer_config.json's setting. */
  cleanUpTokenizationSpaces?: boolean;
}

export interface ChatTemplateOptions {
  /** End with the header of an assistant turn, so the model writes the answer. */
  addGenerationPrompt?: boolean;
  /** Extra template variables, e.g. { enable_thinking: false } for Qwen3. */
  variables?: Record<string, unknown>;
}

/** Turns token ids into text incrementally, holding back bytes of an incomplete character. */
export interface StreamDecoder {
  /** The text that `id` completes (may be ''). */
  push(id: number): string;
  /** Whatever is still held back (incomplete bytes come out as U+FFFD), and resets. */
  flush(): string;
}

/** A tokenizer folder that cannot be used, naming the file and what is wrong. */
export class TokenizerError extends Error {
  override name = 'TokenizerError';
}

type Json = Record<string, unknown>;

/** tokenizer_config.json gives special tokens as strings or as AddedToken objects. */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).content === 'string')
    return (v as Json).content as string;
  return undefined;
}

async function readJsonFile(path: string, required: boolean): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TokenizerError(`${path}: cannot read (${(e as Error).message})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new TokenizerError(`${path}: expected a JSON object`);
  return v as Json;
}

/**
 * Limits on one chat-template render. A template is code from the model folder: a loop over
 * `range(100000000)` or a string doubled in a loop would otherwise pin a core and grow memory
 * until the process dies, with the worker unable to answer `status` or cancel meanwhile. Real
 * templates take a few thousand evaluation steps and write about as much as their messages hold.
 */
export const TEMPLATE_LIMITS = {
  /** Evaluation steps (expressions and statements evaluated). */
  steps: 2_000_000,
  /** Wall-clock time, checked every 1024 steps. */
  ms: 2_000,
  /**
   * Items of a list (range() included) or characters of a string: this, plus 8 × the characters of
   * the messages and variables.
   */
  size: 1_000_000,
  /** Width for the `indent` filter, whose spaces are allocated in one step. */
  indent: 1_000,
};

class TemplateBudgetError extends Error {}

interface Budget {
  steps: number;
  deadline: number;
  size: number;
}
let budget: Budget | undefined;

// @huggingface/jinja renders synchronously and builds its own Environment and Interpreter inside
// Template.render, so the budget is checked by wrapping the interpreter's `evaluate` (every node
// of the template goes through it) and `applyFilter`, and `range` is swapped for a bounded one as
// the environment's globals are set. The wrappers do nothing unless a render of ours is running;
// rendering is synchronous, so `budget` belongs to that render alone.
interface FilterNode {
  type: string;
  callee?: { value?: string };
  args?: { type: string; value?: unknown }[];
}
interface Evaluator {
  evaluate(node: unknown, env: unknown): { type: string; value: unknown };
  applyFilter(operand: unknown, filter: FilterNode, env: unknown): unknown;
}
const proto = Interpreter.prototype as unknown as Evaluator;
const evaluate0 = proto.evaluate;
const applyFilter0 = proto.applyFilter;
proto.evaluate = function (this: Evaluator, node, env) {
  const b = budget;
  if (!b) return evaluate0.call(this, node, env);
  if (--b.steps < 0) throw new TemplateBudgetError(`it took more than ${TEMPLATE_LIMITS.steps} evaluation steps`);
  if ((b.steps & 1023) === 0 && Date.now() > b.deadline)
    throw new TemplateBudgetError(`it ran for more than ${TEMPLATE_LIMITS.ms / 1000} s`);
  const v = evaluate0.call(this, node, env);
  const n = typeof v?.value === 'string' || Array.isArray(v?.value) ? (v.value as { length: number }).length : 0;
  if (n > b.size) {
    const [what, unit] = typeof v.value === 'string' ? ['text', 'characters'] : ['list', 'items'];
    throw new TemplateBudgetError(`it built a ${what} of ${n} ${unit} (the limit is ${b.size})`);
  }
  return v;
};
proto.applyFilter = function (this: Evaluator, operand, filter, env) {
  if (budget && filter.type === 'CallExpression' && filter.callee?.value === 'indent') {
    // The width is an expression without side effects; evaluate it first to refuse a huge one.
    const arg = filter.args?.find(
      (a, i) =>
        (i === 0 && a.type !== 'KeywordArgumentExpression') ||
        (a as { key?: { value?: string } }).key?.value === 'width',
    );
    const expr = arg?.type === 'KeywordArgumentExpression' ? (arg as unknown as { value: unknown }).value : arg;
    const w = expr === undefined ? undefined : this.evaluate(expr, env).value;
    if (typeof w === 'number' && w > TEMPLATE_LIMITS.indent)
      throw new TemplateBudgetError(`indent(${w}) is wider than ${TEMPLATE_LIMITS.indent}`);
  }
  return applyFilter0.call(this, operand, filter, env);
};

const envProto = Environment.prototype as unknown as { set(name: string, value: unknown): unknown };
const set0 = envProto.set;
envProto.set = function (this: unknown, name, value) {
  return set0.call(this, name, budget && name === 'range' ? boundedRange : value);
};

/** range() as Jinja's, refusing more items than the budget allows before building the list. */
function boundedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() step must not be zero');
  const n = Math.max(0, Math.ceil((stop - start) / step));
  if (!(n <= (budget?.size ?? TEMPLATE_LIMITS.size)))
    throw new TemplateBudgetError(`range() of ${n} items is longer than ${budget?.size ?? TEMPLATE_LIMITS.size}`);
  return Array.from({ length: n }, (_, i) => start + i * step);
}

function idList(v: unknown): number[] {
  const list = Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
  return list.filter((x): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0);
}

/** The chat template from tokenizer_config.json, chat_template.jinja or chat_template.json. */
async function findChatTemplate(dir: string, cfg: Json): Promise<{ template: string; source: string } | undefined> {
  const pick = (t: unknown): string | undefined => {
    if (typeof t === 'string') return t;
    if (Array.isArray(t)) {
      // A list of named templates: the "default" one is what apply_chat_template uses.
      const named = t.filter(
        (x): x is { name: string; template: string } =>
          typeof x === 'object' && x !== null && typeof x.template === 'string',
      );
      return (named.find((x) => x.name === 'default') ?? named[0])?.template;
    }
    if (typeof t === 'object' && t !== null) {
      const rec = t as Record<string, unknown>;
      return typeof rec.default === 'string' ? rec.default : undefined;
    }
    return undefined;
  };
  const jinjaPath = join(dir, 'chat_template.jinja');
  if (existsSync(jinjaPath)) return { template: await readFile(jinjaPath, 'utf8'), source: jinjaPath };
  const jsonPath = join(dir, 'chat_template.json');
  const j = await readJsonFile(jsonPath, false);
  const fromJson = j ? pick(j.chat_template) : undefined;
  if (fromJson) return { template: fromJson, source: jsonPath };
  const fromCfg = pick(cfg.chat_template);
  if (fromCfg) return { template: fromCfg, source: join(dir, 'tokenizer_config.json') };
  return undefined;
}

export class Tokenizer {
  /** One more than the largest token id the tokenizer knows (vocabulary plus added tokens). */
  readonly vocabSize: number;
  readonly bosId?: number;
  /** Ids that end generation: tokenizer_config's eos_token, generation_config's and config's eos_token_id. */
  readonly eosIds: number[];
  readonly padId?: number;
  /** Ids of the added tokens marked special. */
  readonly specialIds: Set<number>;
  /** The special-token strings the chat template may use (bos_token, eos_token, …). */
  readonly specialTokens: Record<string, string>;

  private compiled?: Template;

  private constructor(
    readonly dir: string,
    private readonly tok: HfTokenizer,
    private readonly cfg: Json,
    private readonly chat: { template: string; source: string } | undefined,
    generation: Json | undefined,
    modelConfig: Json | undefined,
  ) {
    const vocab = tok.get_vocab(true);
    let max = -1;
    for (const id of vocab.values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    this.specialIds = new Set([...tok.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));

    const idOf = (key: string): number | undefined => {
      const s = tokenString(cfg[key]);
      if (s === undefined) return undefined;
      const id = tok.token_to_id(s);
      if (id === undefined)
        throw new TokenizerError(
          `${join(dir, 'tokenizer_config.json')}: ${key} "${s}" is not a token of tokenizer.json`,
        );
      return id;
    };
    this.specialTokens = {};
    for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
      const s = tokenString(cfg[k]);
      if (s !== undefined) this.specialTokens[k] = s;
    }
    const bos = idOf('bos_token');
    if (bos !== undefined) this.bosId = bos;
    const eos = new Set<number>();
    const e0 = idOf('eos_token');
    if (e0 !== undefined) eos.add(e0);
    for (const id of idList(generation?.eos_token_id)) eos.add(id);
    for (const id of idList(modelConfig?.eos_token_id)) eos.add(id);
    this.eosIds = [...eos];
    const pad = idOf('pad_token') ?? idList(generation?.pad_token_id)[0] ?? idList(modelConfig?.pad_token_id)[0];
    if (pad !== undefined) this.padId = pad;
  }

  /**
   * Loads tokenizer.json (required), tokenizer_config.json, and the chat template, and takes the
   * end-of-sequence ids from generation_config.json and config.json too. When config.json is
   * present, checks that every id the tokenizer can produce fits the model's vocabulary.
   */
  static async fromFolder(dir: string): Promise<Tokenizer> {
    const abs = resolve(dir);
    const tjPath = join(abs, 'tokenizer.json');
    if (!existsSync(tjPath)) {
      const sp = existsSync(join(abs, 'tokenizer.model'))
        ? ' (only tokenizer.model, a SentencePiece file, is present; save the fast tokenizer with tokenizer.save_pretrained to get tokenizer.json)'
        : '';
      throw new TokenizerError(`${abs}: tokenizer.json is missing${sp}`);
    }
    const [tj, cfg, generation, modelConfig] = await Promise.all([
      readJsonFile(tjPath, true),
      readJsonFile(join(abs, 'tokenizer_config.json'), false),
      readJsonFile(join(abs, 'generation_config.json'), false),
      readJsonFile(join(abs, 'config.json'), false),
    ]);
    const model = tj!.model as Json | undefined;
    if (typeof model !== 'object' || model === null) throw new TokenizerError(`${tjPath}: no "model" section`);
    const config = cfg ?? {};
    let tok: HfTokenizer;
    try {
      tok = new HfTokenizer(tj!, config);
    } catch (e) {
      throw new TokenizerError(
        `${tjPath}: cannot build the tokenizer (model type ${String(model.type)}): ${(e as Error).message}`,
      );
    }
    const chat = await findChatTemplate(abs, config);
    const t = new Tokenizer(abs, tok, config, chat, generation, modelConfig);
    const V = modelConfig?.vocab_size;
    if (typeof V === 'number' && t.vocabSize > V) {
      throw new TokenizerError(
        `${tjPath}: token ids go up to ${t.vocabSize - 1} but config.json has vocab_size ${V}: the tokenizer does not belong to this model`,
      );
    }
    return t;
  }

  get hasChatTemplate(): boolean {
    return this.chat !== undefined;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const add = opts.addSpecialTokens ?? true;
    const ids = this.tok.encode(text, { add_special_tokens: add }).ids;
    if (add) {
      // Slow-tokenizer style flags that the fast tokenizer's post-processor may not implement.
      if (this.cfg.add_bos_token === true && this.bosId !== undefined && ids[0] !== this.bosId) ids.unshift(this.bosId);
      const eos = tokenString(this.cfg.eos_token);
      const eosId = eos === undefined ? undefined : this.tok.token_to_id(eos);
      if (this.cfg.add_eos_token === true && eosId !== undefined && ids[ids.length - 1] !== eosId) ids.push(eosId);
    }
    return ids;
  }

  /** Text of token ids. Ids the tokenizer does not know (e.g. padding rows of a larger embedding) decode to ''. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const known = ids.filter(
      (id) => Number.isInteger(id) && id >= 0 && id < this.vocabSize && this.tok.id_to_token(id) !== undefined,
    );
    if (known.length === 0) return '';
    const o: { skip_special_tokens: boolean; clean_up_tokenization_spaces?: boolean } = {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
    };
    if (opts.cleanUpTokenizationSpaces !== undefined) o.clean_up_tokenization_spaces = opts.cleanUpTokenizationSpaces;
    return this.tok.decode(known, o);
  }

  /** The token string of an id (e.g. 'Ġworld'), or undefined. */
  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /** The id of a token string (e.g. '<|im_end|>'), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /**
   * Renders the chat template as transformers' apply_chat_template(tokenize=False) does. The
   * result already holds the special tokens the template writes (e.g. BOS for Llama 3): encode it
   * with { addSpecialTokens: false }.
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (!this.chat) {
      throw new TokenizerError(
        `${this.dir}: the tokenizer has no chat template (no "chat_template" in tokenizer_config.json, no chat_template.jinja or chat_template.json); use an instruct/chat model or add a template`,
      );
    }
    if (!this.compiled) {
      try {
        this.compiled = new Template(this.chat.template);
      } catch (e) {
        throw new TokenizerError(`${this.chat.source}: the chat template does not parse: ${(e as Error).message}`);
      }
    }
    const chars =
      messages.reduce((a, m) => a + m.content.length, 0) + (opts.variables ? JSON.stringify(opts.variables).length : 0);
    budget = {
      steps: TEMPLATE_LIMITS.steps,
      deadline: Date.now() + TEMPLATE_LIMITS.ms,
      size: TEMPLATE_LIMITS.size + 8 * chars,
    };
    try {
      return this.compiled.render({
        ...this.specialTokens,
        ...opts.variables,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: opts.addGenerationPrompt ?? false,
      });
    } catch (e) {
      if (e instanceof TemplateBudgetError || e instanceof RangeError) {
        const why = e instanceof RangeError ? `it ran out of room (${e.message})` : (e as Error).message;
        throw new TokenizerError(
          `${this.chat.source}: the chat template was stopped: ${why}. A chat template needs only a few thousand steps; fix or replace the template (or use a model folder with a standard one)`,
        );
      }
      throw new TokenizerError(`${this.chat.source}: the chat template failed: ${(e as Error).message}`);
    } finally {
      budget = undefined;
    }
  }

  /**
   * A decoder for a stream of generated ids. It decodes a small window of recent ids (so its cost
   * does not grow with the text) and emits text only once it no longer ends in an incomplete
   * character. Special tokens are skipped unless `skipSpecialTokens` is false.
   */
  streamDecoder(opts: { skipSpecialTokens?: boolean } = {}): StreamDecoder {
    const skip = opts.skipSpecialTokens ?? true;
    const dec = (ids: number[]) => this.decode(ids, { skipSpecialTokens: skip, cleanUpTokenizationSpaces: false });
    let ids: number[] = [];
    let prefix = 0; // start of the window whose text was already emitted up to `read`
    let read = 0; // ids before this have been emitted
    return {
      push: (id: number): string => {
        ids.push(id);
        const prefixText = dec(ids.slice(prefix, read));
        const text = dec(ids.slice(prefix));
        if (text.length > prefixText.length && !text.endsWith('\uFFFD')) {
          const out = text.slice(prefixText.length);
          // Keep ids from `read` on as the next window's context, and drop older ones.
          ids = ids.slice(read);
          prefix = 0;
          read = ids.length;
          return out;
        }
        return '';
      },
      flush: (): string => {
        const prefixText = dec(ids.slice(prefix, read));
        const text = dec(ids.slice(prefix));
        ids = [];
        prefix = read = 0;
        return text.length > prefixText.length ? text.slice(prefixText.length) : '';
      },
    };
  }
}
