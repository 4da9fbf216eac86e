// The prompts of prompt distillation, in one place: the teacher reads the document, the student
// does not; the teacher also writes the questions. The built-in demo model is trained on exactly
// these messages, and real instruct models follow them as they are.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface PromptSettings {
  system: string;
  /** Teacher and question writer see the document through this, with {doc} replaced. */
  documentBlock: string;
  questionRequest: string;
  /** A request with no document: questions the docs do not answer (the guard against over-generalising). */
  generalQuestionRequest: string;
  /** A request to say a question in other words, with {question} replaced (the paraphrase step). */
  paraphraseRequest: string;
}

export const DEFAULT_PROMPTS: PromptSettings = {
  system: 'Answer questions about what you know.',
  documentBlock: 'Document:\n{doc}\n\n',
  questionRequest: 'Write a question about this document.',
  generalQuestionRequest: 'Write a question.',
  paraphraseRequest: 'Rephrase this question: {question}',
};

const withDoc = (p: PromptSettings, doc: string) => p.documentBlock.replace('{doc}', () => doc.trim());

/** The teacher: the document, then the question. */
export function teacherMessages(doc: string, question: string, p: PromptSettings = DEFAULT_PROMPTS): ChatMessage[] {
  return [
    { role: 'system', content: p.system },
    { role: 'user', content: `${withDoc(p, doc)}Question: ${question}` },
  ];
}

/** The student: the same question without the document. */
export function studentMessages(question: string, p: PromptSettings = DEFAULT_PROMPTS): ChatMessage[] {
  return [
    { role: 'system', content: p.system },
    { role: 'user', content: `Question: ${question}` },
  ];
}

/** The question writer: the document and a request for a question about it. */
export function questionMessages(doc: string, p: PromptSettings = DEFAULT_PROMPTS): ChatMessage[] {
  return [
    { role: 'system', content: p.system },
    { role: 'user', content: `${withDoc(p, doc)}${p.questionRequest}` },
  ];
}

/** A request to say a question in other words (no document: the question carries its subject). */
export function paraphraseMessages(question: string, p: PromptSettings = DEFAULT_PROMPTS): ChatMessage[] {
  return [
    { role: 'system', content: p.system },
    { role: 'user', content: p.paraphraseRequest.replace('{question}', () => question) },
  ];
}

/** A request for a question about anything (no document). */
export function generalQuestionMessages(p: PromptSettings = DEFAULT_PROMPTS): ChatMessage[] {
  return [
    { role: 'system', content: p.system },
    { role: 'user', content: p.generalQuestionRequest },
  ];
}

/**
 * A chat turn (the worker's chat request): the conversation as given, with the run's system prompt
 * when it has none, and for the teacher the documents' text before the first question, exactly as
 * teacherMessages puts it (so the teacher in chat is the teacher of the distillation).
 */
export function chatMessages(
  messages: readonly ChatMessage[],
  p: PromptSettings = DEFAULT_PROMPTS,
  doc?: string,
): ChatMessage[] {
  const out = messages.map((m) => ({ ...m }));
  if (!out.some((m) => m.role === 'system')) out.unshift({ role: 'system', content: p.system });
  const firstUser = out.find((m) => m.role === 'user');
  if (firstUser && doc) firstUser.content = `${withDoc(p, doc)}Question: ${firstUser.content}`;
  return out;
}

/** What a model says when it does not know (the demo model's words; used to score "I don't know"). */
export const DONT_KNOW = 'I do not know.';

export function saysDontKnow(answer: string): boolean {
  return /\b(i\s+do\s*n[o']t\s+know|i\s+don'?t\s+know|no\s+information|not\s+sure|cannot\s+answer|can't\s+answer|unknown|(does\s+not|doesn't)\s+(say|mention|specify|state|tell)|not\s+(mentioned|stated|specified))\b/i.test(
    answer,
  );
}
