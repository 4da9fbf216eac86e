// The one check for user-given names (adapter names, run ids) wherever they enter: the command
// line, the extension's settings and the worker's protocol. A name becomes a folder name as it is
// given, so it is checked as it is given: nothing is trimmed (a trimmed check of an untrimmed name
// let "docs " and "docs\n" through as folders that look like "docs").

const PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const NAME_RULE = 'letters, digits, ".", "-" and "_" only (up to 64, starting with a letter or digit)';

/** Why `name` is not a usable name, or undefined when it is. */
export function nameProblem(name: unknown, what = 'name'): string | undefined {
  if (typeof name !== 'string') return `${what} must be a string`;
  const shown = JSON.stringify(name);
  if (name === '') return `${what} is empty; use ${NAME_RULE}`;
  // eslint-disable-next-line no-control-regex
  const ctl = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.exec(name);
  if (ctl)
    return `${what} ${shown} has a control character (U+${ctl[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}); use ${NAME_RULE}`;
  if (/^\s|\s$/.test(name))
    return `${what} ${shown} ${/^\s/.test(name) ? 'starts' : 'ends'} with a space; remove it (a name with a space at its end looks like one without); use ${NAME_RULE}`;
  if (!PATTERN.test(name) || name.includes('..')) return `${what} ${shown} may only have ${NAME_RULE}`;
  return undefined;
}

/** `name` itself if it is a usable name; otherwise an Error that says why. */
export function checkName(name: string, what = 'name'): string {
  const p = nameProblem(name, what);
  if (p) throw new Error(p);
  return name;
}
