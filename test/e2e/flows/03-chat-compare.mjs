// In the chat panel's compare mode, a question about a fact of the distilled doc is answered
// correctly by the student (no doc in its prompt) and not by the base model.

export const title = 'chat: student vs base vs teacher';

export async function run(h) {
  const { command } = h;
  try {
    await ask(h);
  } finally {
    await command('View: Close Editor').catch(() => {});
  }
}

async function ask({ command, webview, shot, waitFor, facts, log }) {
  const e = facts.docs[0].entity;
  const f = e.facts.find((x) => x.relation === 'instrument') ?? e.facts[0];
  const q = {
    instrument: `Which instrument does ${e.name} play?`,
    colour: `Which colour does ${e.name} like best?`,
    year: `In which year was ${e.name} born?`,
    town: `In which town does ${e.name} live?`,
    food: `Which food does ${e.name} like?`,
    job: `What is the job of ${e.name}?`,
    pet: `What is the pet of ${e.name} called?`,
    sibling: `Who is the sibling of ${e.name}?`,
  }[f.relation];
  await command('DocDistill: Chat with Model');
  const chat = await webview('DocDistill Chat');
  await chat.locator('#question').waitFor({ timeout: 30_000 });
  await chat.locator('#question').fill(q);
  await chat.locator('#send').click();
  const answer = (mode) => chat.locator(`.msg.answer.${mode}`).last();
  await waitFor(async () => (await chat.locator('.msg.answer .muted').count()) >= 3, 120_000, 'three answers');
  await shot('08-chat-compare');
  const [base, student, teacher] = await Promise.all(
    ['base', 'student', 'teacher'].map(async (m) => (await answer(m).innerText()).replace(/\s+/g, ' ')),
  );
  // What the product must do: the base model (closed book) does not know the person; the teacher
  // reads the doc; the student (closed book, adapter) has learned the fact from the doc.
  log(`  base: ${base}\n  student: ${student}\n  teacher: ${teacher}\n  value ${f.value}`);
  if (!/do not know/i.test(base) || base.includes(f.value))
    throw new Error(`the base model should not know ${e.name}: ${base}`);
  if (!teacher.includes(f.value))
    throw new Error(`the teacher (doc in the prompt) should answer ${f.value}: ${teacher}`);
  if (!student.includes(f.value))
    throw new Error(`the student should answer ${f.value} from what it learned: ${student}`);
}
