// Question parsing from sloppy model output, de-duplication, the held-out split, and grounding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  answeredFromPassage,
  chooseHeldOut,
  crossQuestions,
  dedupe,
  heldOutByAnswer,
  isGrounded,
  mentionsAny,
  namesIn,
  noisyQuestion,
  parseQuestions,
  questionId,
  questionKey,
  questionKind,
  wordSet,
} from '../../../src/pipeline/questions';
import { saysDontKnow } from '../../../src/pipeline/prompts';
import { mulberry32 } from '../../../src/common/rng';

test('questions are parsed from lists, tags, prefixes and chatter', () => {
  const text = [
    'Sure! Here are some questions:',
    '1. What colour does **Dapu** like?',
    '- Q: Where does Dapu live?  Which pet does Dapu have?',
    '<question>Who is the sibling of Dapu?</question>',
    'This line is not a question.',
  ].join('\n');
  assert.deepEqual(parseQuestions(text), ['Who is the sibling of Dapu?']);
  assert.deepEqual(parseQuestions(text.replace(/<\/?question>/g, '')), [
    'What colour does Dapu like?',
    'Where does Dapu live?',
    'Which pet does Dapu have?',
    'Who is the sibling of Dapu?',
  ]);
  assert.deepEqual(parseQuestions('Sure. What does Dapu eat?'), ['What does Dapu eat?']);
  assert.deepEqual(parseQuestions('?? ok?'), []);
});

test('near-identical questions collide; the first is kept', () => {
  const seen = new Set<string>();
  assert.deepEqual(dedupe(['Where does Dapu live?', 'where does dapu live', 'Where does Dapu  live ?!'], seen), [
    'Where does Dapu live?',
  ]);
  assert.deepEqual(dedupe(['Where does Dapu live?', 'What does Dapu eat?'], seen), ['What does Dapu eat?']);
});

test('the held-out split is a stable share decided by the question and the seed', () => {
  const qs = Array.from({ length: 2000 }, (_, i) => `Question number ${i}?`);
  const held = chooseHeldOut(qs, 0.2, 0);
  const share = held.size / qs.length;
  assert.ok(Math.abs(share - 0.2) < 0.03, `held-out share ${share}`);
  assert.deepEqual(
    chooseHeldOut(
      qs.map((q) => q.toLowerCase()),
      0.2,
      0,
    ),
    held,
    'case does not matter',
  );
  assert.notDeepEqual([...chooseHeldOut(qs, 0.2, 1)].sort(), [...held].sort(), 'the seed does');
});

test('a question naming something its passage never mentions is not grounded in it', () => {
  const passage = wordSet(
    '# Laekygeiq\n\nThe home of Laekygeiq is in the town of Koro. Laekygeiq has a pet named Thupylk.',
  );
  assert.deepEqual(namesIn("Where does Laekygeiq's pet Thupylk live?"), ['Laekygeiq', 'Thupylk']);
  assert.ok(isGrounded('Where does Laekygeiq live?', passage));
  assert.ok(isGrounded("What is Laekygeiq's pet called?", passage));
  assert.ok(isGrounded('What is the name of the pet?', passage), 'no names: grounded');
  assert.ok(isGrounded('Is Koro a town where I could live?', passage), '"I" is not a name');
  assert.ok(!isGrounded('Where does Gavand live?', passage));
  assert.ok(!isGrounded('Does Laekygeiq live in Paris?', passage));
});

test('a general question that names something in the docs is about the docs', () => {
  const docs = wordSet('Dapu works as a carpenter. Blenoubun likes grey.');
  assert.ok(mentionsAny('What does Dapu play?', docs));
  assert.ok(!mentionsAny('What does Vidax play?', docs));
  assert.ok(!mentionsAny('Write something about carpenters?', docs), 'lower-case words are not names');
});

test('chooseHeldOut holds out exactly round(share × n), at least one, never all, whatever the order', () => {
  const qs = Array.from({ length: 23 }, (_, i) => `Where does Person${i} live?`);
  const held = chooseHeldOut(qs, 0.2, 0);
  assert.equal(held.size, 5);
  const reversed = chooseHeldOut([...qs].reverse(), 0.2, 0);
  assert.deepEqual(
    [...reversed].map((i) => qs[qs.length - 1 - i]).sort(),
    [...held].map((i) => qs[i]).sort(),
    'the same questions in any order',
  );
  assert.equal(chooseHeldOut(qs.slice(0, 3), 0.05, 0).size, 1, 'at least one');
  assert.equal(chooseHeldOut(qs.slice(0, 2), 0.9, 0).size, 1, 'never all');
  assert.equal(chooseHeldOut(qs.slice(0, 1), 0.5, 0).size, 0);
  assert.equal(chooseHeldOut(qs, 0, 0).size, 0);
});

test('heldOutByAnswer holds a question out only if a training question keeps its answer, and at most the share', () => {
  const same = (a: string, b: string) => a === b;
  // Three facts: the town asked three ways, the pet twice, the year once.
  const items = [
    { question: 'Where does Dapu live?', answer: 'Dapu lives in Koro.' },
    { question: 'In which town does Dapu live?', answer: 'Dapu lives in Koro.' },
    { question: 'What is the home town of Dapu?', answer: 'Dapu lives in Koro.' },
    { question: 'What pet does Dapu have?', answer: 'Dapu has a pet named Zuk.' },
    { question: 'What is the name of the pet of Dapu?', answer: 'Dapu has a pet named Zuk.' },
    { question: 'When was Dapu born?', answer: 'Dapu was born in 1911.' },
  ];
  for (const share of [0.2, 0.5, 0.9]) {
    for (const seed of [0, 1, 2, 3]) {
      const held = heldOutByAnswer(items, share, seed, same);
      assert.ok(held.size <= Math.round(share * items.length));
      assert.ok(!held.has(5), 'the only question about the year stays in training');
      const kept = items.filter((_, i) => !held.has(i)).map((it) => it.answer);
      for (const it of items)
        assert.ok(kept.includes(it.answer), `every answer is still taught (share ${share}, seed ${seed})`);
    }
  }
  assert.equal(
    heldOutByAnswer(items, 0.5, 0, same).size,
    3,
    'as many as the share allows when every fact keeps a question',
  );
  assert.equal(heldOutByAnswer(items, 0, 0, same).size, 0);
});

test("saysDontKnow: abstentions in the demo model's words and in common instruct-model words, not answers", () => {
  for (const a of [
    'I do not know.',
    "I don't know who that is.",
    'The document does not mention her job.',
    "The passage doesn't say.",
    'That is not stated in the text.',
    'I have no information about Brosaesk.',
  ])
    assert.ok(saysDontKnow(a), a);
  for (const a of [
    'Dapu works as a carpenter.',
    'Quute has a pet named Zuklyl.',
    'She knows the town well.',
    'It is mentioned twice.',
  ])
    assert.ok(!saysDontKnow(a), a);
});

test("crossQuestions asks about each passage's subjects what other passages were asked, swapping the one name", () => {
  const passages = [
    {
      id: 'a',
      text: '# Dapu\n\nDapu works as a baker. Dapu has a pet named Zorn.',
      questions: ['What is the job of Dapu?', 'What pet does Dapu have?'],
    },
    {
      id: 'b',
      text: '# Louzourn\n\nLouzourn plays the harp.',
      questions: ['What does Louzourn play?', "Where is Louzourn's house?"],
    },
    { id: 'c', text: 'Nothing with a name.', questions: ['What is this about?'] },
  ];
  const seen = new Set(passages.flatMap((p) => p.questions.map(questionKey)));
  const out = crossQuestions(passages, 1, 7, seen);
  const forA = out.filter((x) => x.id === 'a').map((x) => x.question);
  const forB = out.filter((x) => x.id === 'b').map((x) => x.question);
  // At most round(share × own questions) per passage, each about the passage's own subject, taken
  // from another passage's question (possessives too), never one the passage already had.
  assert.equal(forA.length, 2);
  assert.equal(forB.length, 2);
  for (const q of forA) assert.ok(['What does Dapu play?', "Where is Dapu's house?"].includes(q), q);
  for (const q of forB) assert.ok(['What is the job of Louzourn?', 'What pet does Louzourn have?'].includes(q), q);
  assert.equal(
    out.filter((x) => x.id === 'c').length,
    0,
    'a passage whose questions name nothing of it has no subject',
  );
  for (const x of out) assert.ok(seen.has(questionKey(x.question)), 'new keys are added to seen');
  // Deterministic for a seed, off at share 0, and nothing twice.
  assert.deepEqual(crossQuestions(passages, 1, 7, new Set(passages.flatMap((p) => p.questions.map(questionKey)))), out);
  assert.deepEqual(crossQuestions(passages, 0, 7, new Set()), []);
  assert.equal(new Set(out.map((x) => questionKey(x.question))).size, out.length);
});

test('answeredFromPassage: every word the answer adds to its question is in the passage', () => {
  const words = wordSet('# Vidax\n\nMost days Vidax works as a jeweler. At home Vidax keeps a pet named Plumen.');
  assert.ok(answeredFromPassage('What is the job of Vidax?', 'Vidax works as a jeweler.', words));
  assert.ok(answeredFromPassage('What pet does Vidax have?', 'Vidax keeps a pet named Plumen.', words));
  assert.ok(!answeredFromPassage('What pet does Vidax have?', "Vidax's pet is named Plumen.", words), 'is: not in it');
  // An invented value, a word from nowhere, or nothing added: not read from the passage.
  assert.ok(!answeredFromPassage('What is the job of Vidax?', 'Vidax works as a baker.', words));
  assert.ok(!answeredFromPassage('Where does Vidax live?', 'Vidax lives in the town of Plumen.', words));
  assert.ok(!answeredFromPassage('What is the job of Vidax?', 'The job of Vidax.', words));
});

test('noisyQuestion: one word dropped and one moved, never the names, numbers or what the answer shares', () => {
  const q = 'What is the name of the pet of Vidax in 2024?';
  const a = 'Vidax has a pet named Plumen.';
  const rand = mulberry32(7);
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const n = noisyQuestion(q, a, rand);
    seen.add(n);
    const words = n.replace(/\?$/, '').split(' ');
    assert.ok(n.endsWith('?'), n);
    assert.equal(words[0], 'What', `the first word stays first: ${n}`);
    assert.equal(words.length, q.split(' ').length - 1, `one word fewer: ${n}`);
    for (const keep of ['Vidax', '2024', 'pet', 'name']) assert.ok(words.includes(keep), `${keep} kept: ${n}`);
    // The other words are the question's, each at most as often as there.
    const count = (ws: string[], w: string) => ws.filter((x) => x === w).length;
    const orig = q.replace(/\?$/, '').split(' ');
    for (const w of words) assert.ok(count(words, w) <= count(orig, w), `${w} comes from the question: ${n}`);
  }
  assert.ok(seen.size > 20, `varied (${seen.size} forms)`);
  // Same stream, same forms.
  const r1 = mulberry32(3),
    r2 = mulberry32(3);
  assert.equal(noisyQuestion(q, a, r1), noisyQuestion(q, a, r2));
  // A word shared with the answer in another form ("work", "works") is kept; nothing to lose, nothing lost.
  for (let i = 0; i < 20; i++)
    assert.ok(noisyQuestion('What does Vidax work as?', 'Vidax works as a jeweler.', rand).includes('work'));
  assert.equal(noisyQuestion('When was Limal born?', 'Limal was born in the year 1979.', rand), 'When was Limal born?');
});

test('question ids say where a question came from', () => {
  const chunk = 'ab'.repeat(32);
  for (const kind of ['written', 'paraphrase', 'cross', 'general'] as const)
    for (const n of [0, 7, 123]) assert.equal(questionKind(questionId(kind, chunk, n)), kind, `${kind} ${n}`);
  assert.equal(questionId('written', chunk, 3), `${chunk.slice(0, 12)}-3`);
  assert.equal(questionId('cross', chunk, 3), `${chunk.slice(0, 12)}-x3`);
});
