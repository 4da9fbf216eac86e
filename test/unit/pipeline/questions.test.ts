// Question parsing from sloppy model output, de-duplication, the held-out split, and grounding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseHeldOut, dedupe, heldOutByAnswer, isGrounded, mentionsAny, namesIn, parseQuestions, wordSet } from '../../../src/pipeline/questions';
import { saysDontKnow } from '../../../src/pipeline/prompts';

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
  assert.deepEqual(dedupe(['Where does Dapu live?', 'where does dapu live', 'Where does Dapu  live ?!'], seen), ['Where does Dapu live?']);
  assert.deepEqual(dedupe(['Where does Dapu live?', 'What does Dapu eat?'], seen), ['What does Dapu eat?']);
});

test('the held-out split is a stable share decided by the question and the seed', () => {
  const qs = Array.from({ length: 2000 }, (_, i) => `Question number ${i}?`);
  const held = chooseHeldOut(qs, 0.2, 0);
  const share = held.size / qs.length;
  assert.ok(Math.abs(share - 0.2) < 0.03, `held-out share ${share}`);
  assert.deepEqual(chooseHeldOut(qs.map((q) => q.toLowerCase()), 0.2, 0), held, 'case does not matter');
  assert.notDeepEqual([...chooseHeldOut(qs, 0.2, 1)].sort(), [...held].sort(), 'the seed does');
});

test('a question naming something its passage never mentions is not grounded in it', () => {
  const passage = wordSet('# Laekygeiq\n\nThe home of Laekygeiq is in the town of Koro. Laekygeiq has a pet named Thupylk.');
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
  assert.deepEqual([...reversed].map((i) => qs[qs.length - 1 - i]).sort(), [...held].map((i) => qs[i]).sort(), 'the same questions in any order');
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
      for (const it of items) assert.ok(kept.includes(it.answer), `every answer is still taught (share ${share}, seed ${seed})`);
    }
  }
  assert.equal(heldOutByAnswer(items, 0.5, 0, same).size, 3, 'as many as the share allows when every fact keeps a question');
  assert.equal(heldOutByAnswer(items, 0, 0, same).size, 0);
});

test('saysDontKnow: abstentions in the demo model\'s words and in common instruct-model words, not answers', () => {
  for (const a of ['I do not know.', "I don't know who that is.", 'The document does not mention her job.', "The passage doesn't say.", 'That is not stated in the text.', 'I have no information about Brosaesk.'])
    assert.ok(saysDontKnow(a), a);
  for (const a of ['Dapu works as a carpenter.', 'Quute has a pet named Zuklyl.', 'She knows the town well.', 'It is mentioned twice.'])
    assert.ok(!saysDontKnow(a), a);
});
