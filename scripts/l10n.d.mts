/** The strings of the host and the webviews, as the English l10n bundle (text → text). */
export function extractStrings(root: string): Record<string, string>;
