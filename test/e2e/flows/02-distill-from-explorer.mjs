// Right-click a Markdown file in the Explorer → "Distill into Model" with the demo model: the
// status bar shows the job; the dashboard fills with QA samples and a loss curve that grows; the
// evaluation table appears at the end.
export const title = 'distill from the explorer menu, status bar, dashboard';
export const critical = true;

export async function explorerMenu(h, file, item) {
  const { page } = h;
  await h.command('View: Show Explorer');
  const tree = page.locator('.explorer-folders-view');
  const fileRow = tree.locator('.monaco-list-row', { hasText: file });
  if (!(await fileRow.count())) await tree.locator('.monaco-list-row', { hasText: 'docs' }).first().click();
  await fileRow.first().waitFor({ timeout: 10_000 });
  await fileRow.first().click({ button: 'right' });
  const entry = page.locator('.context-view .action-item', { hasText: item }).first();
  await entry.waitFor({ timeout: 10_000 });
  // Clicking the menu entry's label is what the workbench listens to.
  return {
    click: async () => {
      await entry.locator('.action-menu-item, .action-label').first().click();
      await page
        .locator('.context-view .monaco-menu')
        .waitFor({ state: 'detached', timeout: 5000 })
        .catch(async () => {
          await entry.hover();
          await page.keyboard.press('Enter');
        });
    },
  };
}

/** Number of job cards in the dashboard, and the newest one's state. */
export async function jobs(h) {
  const dash = await h.webview('DocDistill');
  const n = await dash.locator('.job').count();
  return { n, latest: n ? await dash.locator('.job').first().getAttribute('data-state') : undefined };
}

export async function run(h) {
  const { page, shot, webview, statusBar, waitFor } = h;
  const entry = await explorerMenu(h, h.docs[0], 'Distill into Model');
  await shot('03-explorer-context-menu');
  await entry.click();
  await waitFor(
    async () => /DocDistill: (ingest|questions|answers|starting)/.test(await statusBar().innerText()),
    60_000,
    'the job in the status bar',
  );
  await shot('04-status-bar-job');
  await h.command('DocDistill: Open Dashboard');
  const dash = await webview('DocDistill');
  await dash.locator('table.samples tbody tr').first().waitFor({ timeout: 180_000 });
  await shot('05-dashboard-samples');
  const points = async () =>
    (
      (await dash
        .locator('svg.loss-chart polyline.train-line')
        .getAttribute('points')
        .catch(() => '')) ?? ''
    )
      .trim()
      .split(/\s+/)
      .filter(Boolean).length;
  await waitFor(async () => (await points()) >= 2, 180_000, 'a loss curve');
  const first = await points();
  await waitFor(async () => (await points()) > first, 120_000, 'the loss curve to grow');
  await shot('06-dashboard-loss-curve');
  // An open section stays open while job events arrive (the dashboard updates in place).
  await dash.locator('details.log summary').first().click();
  const n0 = await points();
  await waitFor(async () => (await points()) > n0 + 1, 120_000, 'more training steps');
  if (
    !(await dash
      .locator('details.log')
      .first()
      .evaluate((d) => d.open))
  )
    throw new Error('the open Log section collapsed when job events arrived');
  // The same dashboard mid-training in a narrow (~400 px) editor, dark theme.
  await h.command('Preferences: Toggle between Light/Dark Themes');
  await waitFor(
    async () => (await dash.locator('body.vscode-dark').count()) > 0,
    10_000,
    'the dashboard in the dark theme',
  );
  await h.command('View: Close Primary Side Bar');
  await page.setViewportSize({ width: 460, height: 900 });
  await page.waitForTimeout(1500);
  await dash.locator('svg.loss-chart').scrollIntoViewIfNeeded();
  const w = await dash.locator('svg.loss-chart').evaluate((e) => e.getBoundingClientRect().width);
  h.log(`  chart width in the narrow editor: ${w.toFixed(0)} px`);
  await shot('06b-dashboard-narrow-dark');
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.waitForTimeout(1000);
  await h.command('Preferences: Toggle between Light/Dark Themes');
  await waitFor(async () => (await dash.locator('body.vscode-light').count()) > 0, 10_000, 'the light theme again');
  await h.command('View: Show Explorer');
  await dash.locator('table.eval-table').waitFor({ timeout: 240_000 });
  await dash.locator('.job[data-state="done"]').first().waitFor({ timeout: 60_000 });
  await dash.locator('table.eval-table').scrollIntoViewIfNeeded();
  await shot('07-dashboard-evaluation');
  await waitFor(
    async () => !/sync~spin|DocDistill: (questions|answers|train|evaluate)/.test(await statusBar().innerText()),
    30_000,
    'the status bar to go idle',
  );
  void page;
}
