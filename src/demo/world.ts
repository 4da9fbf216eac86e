// A synthetic micro-world for the built-in demo model, where knowledge injection can be measured
// exactly: invented people (names that are not words), eight kinds of facts about each, written
// as short Markdown documents with varied sentences, and questions in several phrasings.
//
// Reading is made learnable for a ~1 M-parameter model: every name and value is one token of the
// demo tokenizer, and in every sentence template the value comes right after the same cue words
// ("the town of", "works as a", …), while the rest of the sentence and the fact order vary.
import { Rng } from '../common/rng';

export const RELATIONS = ['town', 'job', 'colour', 'year', 'pet', 'sibling', 'food', 'instrument'] as const;
export type Relation = (typeof RELATIONS)[number];

export const JOBS = [
  'baker',
  'pilot',
  'farmer',
  'doctor',
  'teacher',
  'painter',
  'sailor',
  'miner',
  'tailor',
  'weaver',
  'potter',
  'singer',
  'dancer',
  'lawyer',
  'nurse',
  'chef',
  'carpenter',
  'fisher',
  'hunter',
  'builder',
  'writer',
  'judge',
  'banker',
  'gardener',
  'jeweler',
  'smith',
  'brewer',
  'butcher',
  'cobbler',
  'mason',
  'dentist',
  'clerk',
  'guard',
  'merchant',
  'scribe',
  'herder',
  'glazier',
  'cooper',
  'drummer',
  'barber',
];
export const COLOURS = [
  'red',
  'blue',
  'green',
  'yellow',
  'purple',
  'orange',
  'black',
  'white',
  'grey',
  'pink',
  'brown',
  'gold',
  'silver',
  'teal',
  'violet',
  'amber',
];
export const FOODS = [
  'bread',
  'cheese',
  'apples',
  'pears',
  'soup',
  'rice',
  'fish',
  'honey',
  'plums',
  'figs',
  'dates',
  'olives',
  'noodles',
  'beans',
  'carrots',
  'grapes',
  'melons',
  'cherries',
  'nuts',
  'eggs',
  'pies',
  'cakes',
  'berries',
  'lentils',
  'peaches',
  'onions',
  'turnips',
  'mushrooms',
  'oats',
  'dumplings',
];
export const INSTRUMENTS = [
  'flute',
  'harp',
  'drum',
  'violin',
  'lute',
  'trumpet',
  'piano',
  'cello',
  'guitar',
  'horn',
  'oboe',
  'banjo',
  'fiddle',
  'bagpipe',
  'organ',
  'zither',
  'tuba',
  'clarinet',
  'bassoon',
  'lyre',
];
export const YEARS = Array.from({ length: 121 }, (_, i) => String(1900 + i));

/** Sentence templates per relation: {N} the person, {V} the value, always right after the cue. */
export const TEMPLATES: Record<Relation, string[]> = {
  town: [
    '{N} lives in the town of {V}.',
    'The home of {N} is in the town of {V}.',
    'These days {N} stays in the town of {V}.',
    'For many years {N} has lived in the town of {V}.',
  ],
  job: [
    '{N} works as a {V}.',
    'By trade, {N} works as a {V}.',
    'For a living {N} works as a {V}.',
    'Most days {N} works as a {V}.',
  ],
  colour: [
    '{N} likes the colour {V} best.',
    'The favourite of {N} is the colour {V}.',
    'Above all, {N} loves the colour {V}.',
    'Of all colours {N} picks the colour {V}.',
  ],
  year: [
    '{N} was born in the year {V}.',
    'The birth of {N} was in the year {V}.',
    'It was in the year {V} that {N} was born.',
    '{N} came into the world in the year {V}.',
  ],
  pet: [
    '{N} has a pet named {V}.',
    'At home {N} keeps a pet named {V}.',
    'A pet named {V} lives with {N}.',
    '{N} takes care of a pet named {V}.',
  ],
  sibling: [
    '{N} has a sibling named {V}.',
    'A sibling named {V} often visits {N}.',
    '{N} grew up with a sibling named {V}.',
    'The family of {N} includes a sibling named {V}.',
  ],
  food: [
    '{N} likes to eat {V}.',
    'Every day {N} likes to eat {V}.',
    'At dinner {N} likes to eat {V}.',
    'When hungry, {N} likes to eat {V}.',
  ],
  instrument: [
    '{N} plays the {V}.',
    'In the evening {N} plays the {V}.',
    'With friends {N} plays the {V}.',
    'Since childhood {N} plays the {V}.',
  ],
};

/**
 * Question phrasings per relation. The last one is reserved: the demo model learns to read and
 * answer it but never writes it, so an evaluation with it uses phrasings that the distillation
 * data did not contain.
 */
export const QUESTIONS: Record<Relation, string[]> = {
  town: ['Where does {N} live?', 'In which town does {N} live?', 'What town is home to {N}?'],
  job: ['What is the job of {N}?', 'What does {N} work as?', 'What work does {N} do?'],
  colour: ['What is the favourite colour of {N}?', 'Which colour does {N} like best?', 'What colour does {N} love?'],
  year: ['When was {N} born?', 'In which year was {N} born?', 'What is the birth year of {N}?'],
  pet: ['What is the name of the pet of {N}?', 'What is the pet of {N} called?', 'What pet does {N} have?'],
  sibling: [
    'What is the name of the sibling of {N}?',
    'Who is the sibling of {N}?',
    'What is the sibling of {N} called?',
  ],
  food: ['What does {N} like to eat?', 'Which food does {N} like?', 'What food does {N} enjoy?'],
  instrument: ['What does {N} play?', 'Which instrument does {N} play?', 'What instrument can {N} play?'],
};

/** Asked which person has a value (training only: the demo model's teacher learns to tie values to people). */
export const WHO_QUESTIONS: Record<Relation, string> = {
  town: 'Who lives in the town of {V}?',
  job: 'Who works as a {V}?',
  colour: 'Who likes the colour {V} best?',
  year: 'Who was born in the year {V}?',
  pet: 'Who has a pet named {V}?',
  sibling: 'Who has a sibling named {V}?',
  food: 'Who likes to eat {V}?',
  instrument: 'Who plays the {V}?',
};

/** Whether someone in `es` other than `e` has `value` for `rel` (then a "who" question about it has two answers). */
export const othersHave = (es: Entity[], e: Entity, rel: Relation, value: string): boolean =>
  es.some((o) => o !== e && o.facts.some((g) => g.relation === rel && g.value === value));

/** The one answer form per relation. */
export const ANSWERS: Record<Relation, string> = {
  town: '{N} lives in the town of {V}.',
  job: '{N} works as a {V}.',
  colour: '{N} likes the colour {V} best.',
  year: '{N} was born in the year {V}.',
  pet: '{N} has a pet named {V}.',
  sibling: '{N} has a sibling named {V}.',
  food: '{N} likes to eat {V}.',
  instrument: '{N} plays the {V}.',
};

export interface Fact {
  relation: Relation;
  value: string;
}

export interface Entity {
  name: string;
  facts: Fact[];
}

export interface QA {
  entity: string;
  relation: Relation;
  question: string;
  answer: string;
  value: string;
  /** Whether this phrasing is the reserved one. */
  reserved: boolean;
}

const ONSETS = [
  'b',
  'd',
  'f',
  'g',
  'k',
  'l',
  'm',
  'n',
  'p',
  'r',
  's',
  't',
  'v',
  'z',
  'br',
  'dr',
  'gr',
  'kr',
  'pr',
  'tr',
  'vr',
  'zh',
  'th',
  'sk',
  'qu',
  'bl',
  'gl',
  'kl',
  'pl',
  'sl',
];
const VOWELS = ['a', 'e', 'i', 'o', 'u', 'ae', 'ei', 'ou', 'y'];
const CODAS = ['', '', 'n', 'r', 'l', 'x', 'th', 'sk', 'nd', 'rn', 'lk', 'z', 'q'];

/** Invented, capitalised, pronounceable names: `count` distinct ones, none equal to `taken`. */
export function inventNames(
  count: number,
  rng: Rng,
  taken: Set<string>,
  syllables: [number, number] = [2, 3],
): string[] {
  const out: string[] = [];
  let guard = 0;
  while (out.length < count) {
    if (++guard > count * 200) throw new Error('inventNames: ran out of names');
    const n = syllables[0] + rng.int(syllables[1] - syllables[0] + 1);
    let w = '';
    for (let i = 0; i < n; i++) w += rng.pick(ONSETS) + rng.pick(VOWELS) + (i === n - 1 ? rng.pick(CODAS) : '');
    const name = w[0]!.toUpperCase() + w.slice(1);
    // Names with a double letter or over 10 letters read badly; skip them.
    if (name.length > 10 || /(.)\1\1/.test(name) || taken.has(name.toLowerCase())) continue;
    taken.add(name.toLowerCase());
    out.push(name);
  }
  return out;
}

export interface WorldVocab {
  people: string[];
  pets: string[];
  towns: string[];
}

/** Every word the world's templates use (lower-cased), so invented names never collide with them. */
export function templateWords(): Set<string> {
  const texts = [
    ...Object.values(TEMPLATES).flat(),
    ...Object.values(QUESTIONS).flat(),
    ...Object.values(ANSWERS),
    ...JOBS,
    ...COLOURS,
    ...FOODS,
    ...INSTRUMENTS,
  ];
  const words = new Set<string>();
  for (const t of texts) for (const w of t.toLowerCase().match(/[a-z]+/g) ?? []) words.add(w);
  return words;
}

export function makeVocab(seed: number, sizes = { people: 1500, pets: 300, towns: 300 }): WorldVocab {
  const rng = new Rng(seed);
  const taken = templateWords();
  // Common English words that invented syllables could spell; keep them out of the name pools.
  for (const w of [
    'baker',
    'bread',
    'gold',
    'the',
    'and',
    'was',
    'tree',
    'pine',
    'love',
    'blue',
    'done',
    'gone',
    'bone',
    'tone',
    'stone',
    'drone',
    'zone',
    'fire',
    'more',
    'sure',
    'pure',
    'sore',
    'core',
    'lore',
    'bore',
    'bare',
    'rare',
    'care',
    'dare',
    'fare',
    'mare',
    'pare',
    'ware',
    'sale',
    'tale',
    'male',
    'pale',
    'bale',
    'gale',
    'kale',
    'vale',
    'dale',
    'tile',
    'pile',
    'mile',
    'file',
    'bile',
    'vile',
    'rile',
    'role',
    'pole',
    'mole',
    'hole',
    'sole',
    'dole',
    'tole',
    'line',
    'mine',
    'nine',
    'fine',
    'dine',
    'wine',
    'vine',
    'tine',
    'kine',
    'sine',
    'lane',
    'mane',
    'pane',
    'sane',
    'vane',
    'bane',
    'cane',
    'wane',
    'rune',
    'tune',
    'dune',
    'june',
    'prune',
  ])
    taken.add(w);
  return {
    people: inventNames(sizes.people, rng, taken, [2, 3]),
    pets: inventNames(sizes.pets, rng, taken, [2, 2]),
    towns: inventNames(sizes.towns, rng, taken, [2, 3]),
  };
}

function valueFor(rel: Relation, v: WorldVocab, rng: Rng, self: string): string {
  switch (rel) {
    case 'town':
      return rng.pick(v.towns);
    case 'job':
      return rng.pick(JOBS);
    case 'colour':
      return rng.pick(COLOURS);
    case 'year':
      return rng.pick(YEARS);
    case 'pet':
      return rng.pick(v.pets);
    case 'sibling': {
      let s = rng.pick(v.people);
      while (s === self) s = rng.pick(v.people);
      return s;
    }
    case 'food':
      return rng.pick(FOODS);
    case 'instrument':
      return rng.pick(INSTRUMENTS);
  }
}

/** An entity with `nFacts` distinct relations (random subset). */
export function makeEntity(name: string, nFacts: number, v: WorldVocab, rng: Rng): Entity {
  const rels = rng.shuffle([...RELATIONS]).slice(0, nFacts);
  return { name, facts: rels.map((relation) => ({ relation, value: valueFor(relation, v, rng, name) })) };
}

/** The relations an entity has no fact for (what its document does not say). */
export const absentRelations = (e: Entity): Relation[] =>
  RELATIONS.filter((r) => !e.facts.some((f) => f.relation === r));

export const fill = (t: string, n: string, v = ''): string => t.replaceAll('{N}', n).replaceAll('{V}', v);

/**
 * The entity's Markdown document: a heading and its facts in random order and wording (`canonical`:
 * each fact in its first template, the answer's form).
 */
export function renderDoc(e: Entity, rng: Rng, canonical = false): string {
  const template = (r: Relation) => (canonical ? TEMPLATES[r][0]! : rng.pick(TEMPLATES[r]));
  const sentences = rng.shuffle(e.facts.map((f) => fill(template(f.relation), e.name, f.value)));
  // One or two paragraphs.
  const cut = sentences.length > 3 && rng.next() < 0.5 ? 1 + rng.int(sentences.length - 1) : sentences.length;
  const paras = [sentences.slice(0, cut).join(' '), sentences.slice(cut).join(' ')].filter(Boolean);
  return `# ${e.name}\n\n${paras.join('\n\n')}\n`;
}

/**
 * A document about several people, each under a `##` heading, the way real notes are written; one
 * person alone gets the `#` heading of `renderDoc` half of the time.
 */
export function renderPeopleDoc(es: Entity[], rng: Rng, canonical = false): string {
  if (es.length === 1 && rng.next() < 0.5) return renderDoc(es[0]!, rng, canonical);
  return es.map((e) => personSection(e, rng, canonical)).join('\n');
}

/** One person's section of a document about several: `renderDoc` under a `##` heading. */
export const personSection = (e: Entity, rng: Rng, canonical = false): string =>
  renderDoc(e, rng, canonical).replace(/^# /, '## ');

export function question(
  e: string,
  rel: Relation,
  rng: Rng,
  opts: { reserved?: boolean } = {},
): { text: string; reserved: boolean } {
  const qs = QUESTIONS[rel];
  if (opts.reserved) return { text: fill(qs[qs.length - 1]!, e), reserved: true };
  return { text: fill(qs[rng.int(qs.length - 1)]!, e), reserved: false };
}

export const answerFor = (e: string, f: Fact): string => fill(ANSWERS[f.relation], e, f.value);

/** What stands where the value would: the document does not give one. */
export const NOT_SAID = '- the document does not say.';

/**
 * The teacher's answer about a relation its document lacks: the answer's form up to the value, then
 * `NOT_SAID` ("Vreruq has a pet named - the document does not say."). The decision falls where the
 * model's copy from the document finds no value to copy, which a 1 M-parameter model learns; deciding
 * before the first word (answering "I do not know.") it did not learn in six fine-tunes and two runs
 * from scratch.
 */
export const notSaidAnswer = (e: string, rel: Relation): string =>
  fill(ANSWERS[rel].slice(0, ANSWERS[rel].indexOf('{V}')), e) + NOT_SAID;

/** Every question about an entity's facts, in every phrasing (for evaluation). */
export function allQAs(e: Entity): QA[] {
  return e.facts.flatMap((f) =>
    QUESTIONS[f.relation].map((q, i, all) => ({
      entity: e.name,
      relation: f.relation,
      question: fill(q, e.name),
      answer: answerFor(e.name, f),
      value: f.value,
      reserved: i === all.length - 1,
    })),
  );
}

/** Which relation a question asks about, if it is a well-formed question of this world about `name`. */
export function parseQuestion(q: string, name?: string): { relation: Relation; entity: string } | undefined {
  const norm = q
    .trim()
    .replace(/\s+/g, ' ')
    .replace(/\s+([?.,!])/g, '$1');
  for (const rel of RELATIONS) {
    for (const t of QUESTIONS[rel]) {
      const re = new RegExp('^' + t.replace(/[?.]/g, (c) => `\\${c}`).replace('{N}', '([A-Z][a-z]+)') + '$');
      const m = re.exec(norm);
      if (m && (!name || m[1] === name)) return { relation: rel, entity: m[1]! };
    }
  }
  return undefined;
}
