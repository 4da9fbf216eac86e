// Chat with the student (the adapter, no docs in the prompt), streamed, with a stop button; the
// compare mode shows the base model, the student and the teacher (docs in the prompt) side by side.
import type { FromChat, ToChat } from '../../src/protocol/webview';
import type { ChatMode } from '../../src/protocol';
import { h, vscode } from '../shared/dom';
import { renderMarkdown } from '../shared/markdown';
import { t } from '../shared/l10n';

interface Turn {
  id: string;
  question: string;
  answers: Partial<Record<ChatMode, { text: string; done: boolean; error?: string; meta?: string }>>;
}
interface State {
  turns: Turn[];
  compare: boolean;
  adapter?: string;
}
const st: State = (vscode.getState() as State | undefined) ?? { turns: [], compare: true };
let adapters: string[] = [];
let busy = false;
const send = (m: FromChat) => vscode.postMessage(m);
const app = document.getElementById('app')!;
const LABEL: Record<ChatMode, string> = {
  base: t('Base model (no docs)'),
  student: t('Student (adapter, no docs)'),
  teacher: t('Teacher (docs in the prompt)'),
};

const convo = h('div', { id: 'conversation', 'aria-live': 'polite' });
const input = h('textarea', {
  id: 'question',
  rows: '3',
  placeholder: t('Ask about your docs…  (Ctrl+Enter to send)'),
  'aria-label': t('question'),
}) as HTMLTextAreaElement;
const sendBtn = h('vscode-button', { id: 'send', onclick: () => ask() }, t('Ask'));
const stopBtn = h(
  'vscode-button',
  { id: 'stop', appearance: 'secondary', disabled: true, onclick: () => send({ type: 'stop' }) },
  t('Stop'),
);
const compare = h(
  'vscode-checkbox',
  { id: 'compare', ...(st.compare ? { checked: true } : {}) },
  t('Compare base / student / teacher'),
) as HTMLElement & { checked: boolean };
compare.addEventListener('change', () => {
  st.compare = compare.checked;
  vscode.setState(st);
});
const picker = h('vscode-dropdown', { id: 'adapter', 'aria-label': t('adapter') }) as HTMLElement & { value: string };
picker.addEventListener('change', () => {
  st.adapter = picker.value;
  vscode.setState(st);
});
input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    ask();
  }
});

function renderPicker(): void {
  picker.replaceChildren(
    ...(adapters.length ? adapters : [t('(no adapter yet)')]).map((a) =>
      h('vscode-option', { value: a, ...(a === st.adapter ? { selected: true } : {}) }, a),
    ),
  );
}

/** True when the user reads the bottom of the conversation (then new text keeps it in view). */
const atBottom = () => window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;

function answerBody(a: NonNullable<Turn['answers'][ChatMode]>): HTMLElement {
  const body = h('div', { class: 'md' });
  if (a.error) body.append(h('span', { class: 'err' }, a.error));
  else if (a.text)
    body.innerHTML = renderMarkdown(a.text); // markdown-it with HTML, links and images off
  else body.textContent = a.done ? t('(no answer)') : '…';
  return body;
}

function turnNode(t: Turn): HTMLElement {
  const modes = Object.keys(t.answers) as ChatMode[];
  return h(
    'div',
    { class: 'turn', 'data-turn': t.id },
    h('div', { class: 'msg user' }, t.question),
    h(
      'div',
      { class: modes.length > 1 ? 'cols' : '' },
      ...modes.map((m) => {
        const a = t.answers[m]!;
        return h(
          'div',
          { class: `msg answer ${m}`, 'data-mode': m },
          h('div', { class: 'label' }, LABEL[m]),
          answerBody(a),
          h('div', { class: a.meta ? 'muted meta' : 'meta' }, a.meta ?? ''),
        );
      }),
    ),
  );
}

/** Full render: on start and for a new question (scrolls to the new question). */
function renderTurns(): void {
  convo.replaceChildren(...st.turns.map(turnNode));
  window.scrollTo(0, document.body.scrollHeight);
}

/** Streaming: only the one answer changes, and the view follows only if the user was at the bottom. */
function updateAnswer(tid: string, mode: ChatMode): void {
  const t = st.turns.find((x) => x.id === tid);
  const el = convo.querySelector(`[data-turn="${tid}"] .msg.answer.${mode}`);
  if (!t || !el) return renderTurns();
  const follow = atBottom();
  const a = t.answers[mode]!;
  el.querySelector('.md')!.replaceWith(answerBody(a));
  const meta = el.querySelector('.meta')!;
  meta.textContent = a.meta ?? '';
  meta.className = a.meta ? 'muted meta' : 'meta'; // .muted appears once the answer is complete
  if (follow) window.scrollTo(0, document.body.scrollHeight);
}

function ask(): void {
  const q = input.value.trim();
  if (!q || busy) return;
  const modes: ChatMode[] = st.compare ? ['base', 'student', 'teacher'] : ['student'];
  const id = `t${Date.now().toString(36)}`;
  const history = st.compare
    ? []
    : st.turns.flatMap((t) =>
        t.answers.student?.done
          ? [
              { role: 'user' as const, content: t.question },
              { role: 'assistant' as const, content: t.answers.student.text },
            ]
          : [],
      );
  st.turns.push({ id, question: q, answers: Object.fromEntries(modes.map((m) => [m, { text: '', done: false }])) });
  input.value = '';
  busy = true;
  stopBtn.removeAttribute('disabled');
  sendBtn.setAttribute('disabled', '');
  renderTurns();
  send({
    type: 'ask',
    id,
    question: q,
    modes,
    adapter: adapters.includes(st.adapter ?? '') ? st.adapter : adapters.at(-1),
    history,
  });
}

function finishIfDone(): void {
  const last = st.turns.at(-1);
  if (last && Object.values(last.answers).every((a) => a!.done)) {
    busy = false;
    stopBtn.setAttribute('disabled', '');
    sendBtn.removeAttribute('disabled');
    vscode.setState(st);
  }
}

window.addEventListener('message', (ev: MessageEvent<ToChat>) => {
  const m = ev.data;
  if (m.type === 'init') {
    adapters = m.adapters;
    if (!st.adapter || !adapters.includes(st.adapter)) st.adapter = m.active;
    renderPicker();
    return;
  }
  const [tid, mode] = m.id.split(':') as [string, ChatMode];
  const a = st.turns.find((t) => t.id === tid)?.answers[mode];
  if (!a) return;
  if (m.type === 'delta') a.text += m.text;
  if (m.type === 'done')
    Object.assign(a, {
      text: m.text,
      done: true,
      meta: `${t('{0} tokens', m.tokens)} · ${t('{0} s', (m.ms / 1000).toFixed(1))}${m.finishReason === 'aborted' ? ` · ${t('stopped')}` : ''}`,
    });
  if (m.type === 'error') Object.assign(a, { done: true, error: m.message });
  updateAnswer(tid, mode);
  finishIfDone();
});

app.append(
  h('h1', {}, t('DocDistill Chat')),
  h('div', { class: 'row' }, h('label', { for: 'adapter' }, t('Adapter')), picker, compare),
  convo,
  input,
  h('div', { class: 'row' }, sendBtn, stopBtn),
);
renderPicker();
renderTurns();
send({ type: 'ready' });
