// The DocDistill view container (Adapters, Runs, Docs), the Explorer badges on distilled docs,
// and @docdistill in VS Code's Chat view where code-server has one.
export const title = 'view container, Explorer decorations, chat participant';

export async function run(h) {
  const { page, shot, waitFor, command, log } = h;
  await page.locator('.activitybar .action-item a[aria-label^="DocDistill"]').first().click();
  const pane = (name) => page.locator('.pane', { has: page.locator('.pane-header', { hasText: name }) });
  await pane('Adapters').locator('.monaco-list-row', { hasText: 'docs' }).first().waitFor({ timeout: 30_000 });
  await pane('Runs').locator('.monaco-list-row').first().waitFor({ timeout: 30_000 });
  await pane('Docs').locator('.monaco-list-row', { hasText: h.docs[0] }).first().waitFor({ timeout: 30_000 });
  const adapterRow = await pane('Adapters').locator('.monaco-list-row', { hasText: 'docs' }).first().innerText();
  if (!/passages/.test(adapterRow))
    throw new Error(`the adapter row should show docs and passages counts: ${adapterRow}`);
  const docRow = await pane('Docs').locator('.monaco-list-row', { hasText: h.docs[0] }).first().innerText();
  if (!/in docs/.test(docRow)) throw new Error(`the Docs view should say which adapter a doc is in: ${docRow}`);
  await pane('Adapters').locator('.monaco-list-row', { hasText: 'docs' }).first().hover();
  await shot('15-view-container');
  // A run in the Runs view opens the dashboard at that run's card.
  await pane('Runs').locator('.monaco-list-row').last().click();
  const dash = await h.webview('DocDistill');
  await waitFor(
    async () => Boolean(await dash.locator('body').evaluate(() => document.activeElement?.getAttribute('data-key'))),
    10_000,
    "the run's card focused in the dashboard",
  );

  // Explorer: the distilled doc carries the "D" badge (drawn by CSS ::after, as for git's "M").
  await command('View: Show Explorer');
  const tree = page.locator('.explorer-folders-view');
  const row = tree.locator('.monaco-list-row', { hasText: h.docs[0] }).first();
  if (!(await row.count())) await tree.locator('.monaco-list-row', { hasText: 'docs' }).first().click();
  await row.waitFor({ timeout: 10_000 });
  await waitFor(
    async () =>
      (
        await row.evaluate((r) =>
          [...r.querySelectorAll('*')].map((e) => getComputedStyle(e, '::after').content).join(' '),
        )
      ).includes('"D"'),
    20_000,
    'the D badge on the distilled doc',
  );
  await shot('16-explorer-decorations');

  // The chat participant: VS Code 1.100's Chat view needs a chat provider extension (Copilot),
  // which a fresh code-server does not have. Record what the view offers.
  await command('View: Toggle Chat').catch(() => log('  no "View: Toggle Chat" command'));
  await page.waitForTimeout(2000);
  const input = page
    .locator('.interactive-input-part .monaco-editor textarea, .chat-editor-container textarea')
    .first();
  if (await input.count()) {
    await input.click();
    await page.keyboard.type('@docdistill ');
    await page.waitForTimeout(1500);
    const suggest = await page
      .locator('.suggest-widget')
      .innerText()
      .catch(() => '');
    log(`  chat view present; suggestions: ${suggest.replace(/\s+/g, ' ').slice(0, 200)}`);
  } else log('  no chat input in this code-server');
  await shot('17-chat-view');
  await page.keyboard.press('Escape');
}
