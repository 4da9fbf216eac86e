// Patches a live DOM tree to match a freshly rendered one, element by element, so an update keeps
// what the user did: open <details>, keyboard focus, text selection, scroll position. Elements are
// reused when tag and `data-key` match; listeners stay those of the first render (ours only post
// fixed messages, so that is enough).
export function morph(live: Element, next: Element): void {
  // Custom elements (the toolkit's buttons) add attributes of their own: leave those alone.
  const own = live.tagName.includes('-');
  for (const { name } of own ? [] : [...live.attributes]) {
    // <details open> belongs to the user once rendered.
    if (!next.hasAttribute(name) && !(name === 'open' && live.tagName === 'DETAILS')) live.removeAttribute(name);
  }
  for (const { name, value } of [...next.attributes])
    if (live.getAttribute(name) !== value) live.setAttribute(name, value);
  if (live instanceof HTMLElement && next instanceof HTMLElement && live.style.cssText !== next.style.cssText)
    live.style.cssText = next.style.cssText;
  morphChildren(live, next);
}

function same(a: Node, b: Node): boolean {
  if (a.nodeType !== b.nodeType) return false;
  if (a instanceof Element && b instanceof Element)
    return a.tagName === b.tagName && a.getAttribute('data-key') === b.getAttribute('data-key');
  return true;
}

export function morphChildren(live: Element, next: Element): void {
  const want = [...next.childNodes];
  let cur = live.firstChild;
  for (const n of want) {
    // Look ahead for a reusable node with the same key (a new job card pushed in front).
    let match: ChildNode | null = cur;
    const key = n instanceof Element ? n.getAttribute('data-key') : null;
    if (key !== null) {
      let c: ChildNode | null = cur;
      while (c && !(c instanceof Element && c.getAttribute('data-key') === key)) c = c.nextSibling;
      match = c;
    }
    if (match && same(match, n)) {
      if (match !== cur) live.insertBefore(match, cur);
      if (match instanceof Element) morph(match, n as Element);
      else if (match.nodeValue !== n.nodeValue) match.nodeValue = n.nodeValue;
      cur = match.nextSibling;
    } else live.insertBefore(n, cur);
  }
  while (cur) {
    const nx: ChildNode | null = cur.nextSibling;
    cur.remove();
    cur = nx;
  }
}
