// Localized strings in the webviews, with vscode.l10n.t's rules: the English text is the key,
// {0}, {1}… are replaced by the arguments. The host puts the loaded bundle (vscode.l10n.bundle:
// l10n/bundle.l10n.<language>.json; none for English) into the page's data-l10n attribute, so a
// webview string is translated in the same file as the host's strings, with no extra request.
const bundle: Record<string, string> = (() => {
  try {
    return JSON.parse(document.body.dataset.l10n || '{}') as Record<string, string>;
  } catch {
    return {};
  }
})();

export function t(message: string, ...args: (string | number)[]): string {
  return (bundle[message] ?? message).replace(/\{(\d+)\}/g, (m, i: string) =>
    Number(i) < args.length ? String(args[Number(i)]) : m,
  );
}
