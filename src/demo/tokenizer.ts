// The demo model's tokenizer, in the Hugging Face tokenizer.json format: WordPiece over the
// world's words, so every name, value and template word is one token, with single characters and
// "##" continuation characters as a fallback that spells any other ASCII word. The chat template
// is ChatML, as Qwen models use.
import { JOBS, COLOURS, FOODS, INSTRUMENTS, YEARS, TEMPLATES, QUESTIONS, ANSWERS, type WorldVocab } from './world';
import { DEFAULT_PROMPTS, DONT_KNOW } from '../pipeline/prompts';

export const SPECIAL_TOKENS = ['<|endoftext|>', '<unk>', '<|im_start|>', '<|im_end|>'] as const;

export const CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Splits text the way BertPreTokenizer does: runs of word characters, and each punctuation mark. */
export function preTokenize(text: string): string[] {
  return text.match(/[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu) ?? [];
}

export function buildVocab(v: WorldVocab): string[] {
  const words = new Set<string>();
  const add = (t: string) => preTokenize(t).forEach((w) => words.add(w));
  const texts = [
    ...Object.values(TEMPLATES).flat(),
    ...Object.values(QUESTIONS).flat(),
    ...Object.values(ANSWERS),
    DEFAULT_PROMPTS.system,
    DEFAULT_PROMPTS.documentBlock,
    DEFAULT_PROMPTS.questionRequest,
    DEFAULT_PROMPTS.generalQuestionRequest,
    'Question:',
    DONT_KNOW,
    'system user assistant',
    '#',
  ];
  texts.forEach(add);
  [...JOBS, ...COLOURS, ...FOODS, ...INSTRUMENTS, ...YEARS, ...v.people, ...v.pets, ...v.towns].forEach(add);
  words.delete('{');
  words.delete('}');
  words.delete('N');
  words.delete('V');
  const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  const punct = '.,?!:;\'"#-()[]{}*_/\\`<>=+&%$@|~^';
  const fallback = [...chars, ...punct, ...[...chars].map((c) => `##${c}`)];
  const vocab: string[] = [...SPECIAL_TOKENS];
  const seen = new Set(vocab);
  for (const w of [...[...words].sort(), ...fallback]) {
    if (!seen.has(w)) {
      seen.add(w);
      vocab.push(w);
    }
  }
  return vocab;
}

export function tokenizerJson(vocab: string[]): object {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '<unk>',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(vocab.map((w, i) => [w, i])),
    },
  };
}

export function tokenizerConfigJson(): object {
  return {
    add_bos_token: false,
    add_eos_token: false,
    bos_token: null,
    eos_token: '<|im_end|>',
    pad_token: '<|endoftext|>',
    unk_token: '<unk>',
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: true,
    model_max_length: 512,
    tokenizer_class: 'PreTrainedTokenizerFast',
    added_tokens_decoder: Object.fromEntries(
      SPECIAL_TOKENS.map((content, id) => [
        String(id),
        { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      ]),
    ),
  };
}
