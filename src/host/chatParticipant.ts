// @docdistill in VS Code's own Chat view: answers from the active student (base model + adapter,
// no docs in the prompt), streamed; /teacher answers with the docs in the prompt; /compare asks
// base, student and teacher one after the other. The docs the adapter was distilled from are
// listed as references. The webview chat panel stays for editors without a Chat view.
import * as vscode from 'vscode';
import { join } from 'node:path';
import * as P from '../protocol';
import type { DocDistill } from './docdistill';

const t = vscode.l10n.t;

/** Earlier turns of this participant's conversation, as chat messages for the worker. */
export function historyOf(context: vscode.ChatContext): { role: 'user' | 'assistant'; content: string }[] {
  const out: { role: 'user' | 'assistant'; content: string }[] = [];
  for (const turn of context.history) {
    if (turn instanceof vscode.ChatRequestTurn) out.push({ role: 'user', content: turn.prompt });
    else if (turn instanceof vscode.ChatResponseTurn) {
      const text = turn.response
        .map((r) => (r instanceof vscode.ChatResponseMarkdownPart ? r.value.value : ''))
        .join('');
      if (text) out.push({ role: 'assistant', content: text });
    }
  }
  return out.slice(-8);
}

export function makeChatHandler(dd: DocDistill): vscode.ChatRequestHandler {
  return async (request, context, stream, token) => {
    const modes: P.ChatMode[] =
      request.command === 'compare'
        ? ['base', 'student', 'teacher']
        : request.command === 'teacher'
          ? ['teacher']
          : ['student'];
    let w;
    try {
      w = await dd.client();
    } catch (e) {
      stream.markdown(t('DocDistill cannot start its model: {0}', (e as Error).message));
      stream.button({ command: 'docdistill.selectModel', title: t('Select Base Model') });
      return { errorDetails: { message: (e as Error).message } };
    }
    if (!dd.adapters.length) await dd.refreshAdapters();
    const adapter = dd.adapters.find((a) => a.active) ?? dd.adapters.at(-1);
    if (!adapter && modes.includes('student')) {
      stream.markdown(t('No adapter yet: distill your docs first.'));
      stream.button({ command: 'docdistill.distillDocsFolder', title: t('Distill Docs Folder') });
      return {};
    }
    const root = dd.root;
    if (adapter && root) for (const s of adapter.sources) stream.reference(vscode.Uri.file(join(root, s)));
    const ac = new AbortController();
    const sub = token.onCancellationRequested(() => ac.abort());
    const label: Record<P.ChatMode, string> = {
      base: t('Base model (no docs)'),
      student: t('Student ({0}, no docs)', adapter?.name ?? ''),
      teacher: t('Teacher (docs in the prompt)'),
    };
    try {
      for (const mode of modes) {
        if (token.isCancellationRequested) break;
        if (modes.length > 1) stream.markdown(`\n\n**${label[mode]}**\n\n`);
        else stream.progress(label[mode]);
        const streamId = `participant:${Date.now().toString(36)}:${mode}`;
        const onDelta = (p: { streamId: string; text: string }) => p.streamId === streamId && stream.markdown(p.text);
        w.on('chatDelta', onDelta);
        try {
          await w.request(
            P.Chat.type,
            {
              streamId,
              mode,
              adapter: adapter?.name,
              messages: [...historyOf(context), { role: 'user', content: request.prompt }],
              maxTokens: 200,
            },
            ac.signal,
          );
        } finally {
          w.off('chatDelta', onDelta);
        }
      }
    } catch (e) {
      if (!ac.signal.aborted) return { errorDetails: { message: (e as Error).message } };
    } finally {
      sub.dispose();
    }
    return { metadata: { adapter: adapter?.name, modes } };
  };
}

/** Registers @docdistill where the editor has a Chat view (`vscode.chat` exists). */
export function registerChatParticipant(dd: DocDistill): vscode.Disposable {
  if (!vscode.chat?.createChatParticipant) return new vscode.Disposable(() => {});
  const p = vscode.chat.createChatParticipant('docdistill.participant', makeChatHandler(dd));
  p.iconPath = vscode.Uri.joinPath(dd.ctx.extensionUri, 'media', 'icon.png');
  p.followupProvider = {
    provideFollowups: (result) =>
      (result.metadata?.modes as string[] | undefined)?.includes('base')
        ? []
        : [{ prompt: '', command: 'compare', label: t('Compare with the base model and the teacher') }],
  };
  return p;
}
