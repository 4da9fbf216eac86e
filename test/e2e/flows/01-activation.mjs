// The extension installs from the VSIX, activates, and its commands are in the command palette.
export const title = 'activation and commands';
export const critical = true;

export async function run({ page, command, shot, waitFor }) {
  await command('DocDistill: Show Log');
  const output = page.locator('.part.panel');
  await waitFor(
    async () => /DocDistill \d+\.\d+\.\d+ activated/.test((await output.innerText()).replace(/\s+/g, ' ')),
    30_000,
    'the activation line in the log',
  );
  await shot('01-log-activated');
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.fill('>DocDistill');
  const rows = page.locator('.quick-input-list .monaco-list-row');
  await waitFor(async () => (await rows.count()) >= 6, 10_000, 'DocDistill commands in the palette');
  const text = await page.locator('.quick-input-list').innerText();
  for (const t of ['Distill Docs Folder', 'Open Dashboard', 'Chat with Model', 'Select Base Model', 'Show Log']) {
    if (!text.includes(t)) throw new Error(`"DocDistill: ${t}" is not in the command palette:\n${text}`);
  }
  // Hidden where it cannot work: no adapter yet, no job running.
  for (const t of ['Manage Adapters', 'Cancel Job', 'Re-distill Adapter']) {
    if (text.includes(t)) throw new Error(`"DocDistill: ${t}" should be hidden from the palette now:\n${text}`);
  }
  await shot('02-command-palette');
  await page.keyboard.press('Escape');
}
