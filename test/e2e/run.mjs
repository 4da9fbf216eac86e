// End-to-end tests in a real VS Code: code-server 4.100.3 (VS Code 1.100.3) from the npm registry,
// driven by Debian's Chromium through playwright-core. The harness packages the VSIX, installs it
// into a fresh profile, opens a fixture workspace and runs the flows in test/e2e/flows/ in order
// (each flow gets the page and helpers; screenshots go to test/e2e/out/). Closing line:
// "e2e: N passed, N failed".
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const cache = join(here, '.cache');
const outDir = join(here, 'out');
const CODE_SERVER = '4.100.3';
const only = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const t0 = Date.now();
const log = (s) => console.log(`e2e [${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}`);

function sh(cmd, args, opts = {}) {
  execFileSync(cmd, args, { stdio: 'inherit', ...opts });
}

/** code-server into test/e2e/.cache (kept between runs), with the recipe of ENVIRONMENT.md. */
function installCodeServer() {
  const bin = join(cache, 'cs', 'node_modules', '.bin', 'code-server');
  if (existsSync(bin)) return bin;
  log(`installing code-server@${CODE_SERVER} (once)…`);
  mkdirSync(join(cache, 'cs'), { recursive: true });
  const tmp = join(cache, 'tmp');
  mkdirSync(tmp, { recursive: true });
  // @vscode/ripgrep's postinstall downloads from GitHub: pre-fill its cache from the npm package.
  const rgDir = join(cache, 'rg');
  if (!existsSync(join(rgDir, 'package', 'bin', 'rg'))) {
    mkdirSync(rgDir, { recursive: true });
    sh('npm', ['pack', '@vscode/ripgrep-linux-x64@1.18.0', '--silent'], { cwd: rgDir });
    const tgz = readdirSync(rgDir).find((f) => f.endsWith('.tgz'));
    sh('tar', ['xzf', tgz], { cwd: rgDir });
  }
  const rgCache = join(tmp, 'vscode-ripgrep-cache-1.15.11');
  mkdirSync(rgCache, { recursive: true });
  sh('tar', [
    'czf',
    join(rgCache, 'ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz'),
    '-C',
    join(rgDir, 'package', 'bin'),
    'rg',
  ]);
  writeFileSync(join(cache, 'cs', 'package.json'), '{"name":"e2e-code-server","private":true}');
  sh('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', `code-server@${CODE_SERVER}`], {
    cwd: join(cache, 'cs'),
    env: {
      ...process.env,
      npm_config_unsafe_perm: 'true',
      npm_config_yes: 'true',
      npm_config_nodedir: '/usr',
      TMPDIR: tmp,
      npm_config_foreground_scripts: 'true',
    },
  });
  if (!existsSync(bin)) throw new Error('code-server did not install');
  return bin;
}

const freePort = () =>
  new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => ok(p));
    });
  });

async function waitFor(fn, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function main() {
  mkdirSync(outDir, { recursive: true });
  for (const f of readdirSync(outDir)) if (f.endsWith('.png')) rmSync(join(outDir, f));
  const codeServer = installCodeServer();
  if (!process.argv.includes('--no-package')) {
    log('packaging the VSIX…');
    sh(process.execPath, [join(repo, 'scripts', 'package.mjs')], { cwd: repo });
  }
  const vsix = readdirSync(join(repo, 'dist-vsix'))
    .filter((f) => f.endsWith('.vsix'))
    .map((f) => join(repo, 'dist-vsix', f))[0];
  if (!vsix) throw new Error('no VSIX in dist-vsix/');
  const home = mkdtempSync(join(tmpdir(), 'dd-e2e-'));
  const env = {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_DATA_HOME: join(home, '.local/share'),
    XDG_CACHE_HOME: join(home, '.cache'),
    TMPDIR: join(home, 'tmp'),
  };
  mkdirSync(env.TMPDIR, { recursive: true });
  const userData = join(home, 'user-data');
  const extDir = join(home, 'extensions');
  log(`installing ${vsix.split('/').pop()} into a fresh profile…`);
  sh(codeServer, ['--user-data-dir', userData, '--extensions-dir', extDir, '--install-extension', vsix], {
    env,
    stdio: 'pipe',
  });
  // The fixture workspace: a few docs of the demo world.
  const ws = join(home, 'workspace');
  cpSync(join(here, 'fixtures', 'workspace'), ws, { recursive: true });
  const exampleFacts = JSON.parse(readFileSync(join(repo, 'examples', 'facts.json'), 'utf8'));
  mkdirSync(join(ws, 'docs'), { recursive: true });
  for (const d of exampleFacts.docs.slice(0, 2))
    cpSync(join(repo, 'examples', 'docs', d.file), join(ws, 'docs', d.file));
  mkdirSync(join(userData, 'User'), { recursive: true });
  writeFileSync(
    join(userData, 'User', 'settings.json'),
    JSON.stringify({
      'workbench.startupEditor': 'none',
      'workbench.tips.enabled': false,
      'security.workspace.trust.enabled': false,
      'telemetry.telemetryLevel': 'off',
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'update.mode': 'none',
      'workbench.welcomePage.walkthroughs.openOnInstall': false,
      // No distillation settings: the demo model's recommended ones (its training.json) apply, as for a user.
      'docdistill.autoRedistill': 'off',
    }),
  );
  // A software WebGPU adapter (Mesa lavapipe) would be picked by 'auto' and is 3-20x slower.
  // docdistill.device is machine-scoped: code-server (a remote) reads it from the machine settings,
  // not from the user settings once it has read the extension's schema.
  mkdirSync(join(userData, 'Machine'), { recursive: true });
  writeFileSync(join(userData, 'Machine', 'settings.json'), JSON.stringify({ 'docdistill.device': 'cpu' }));
  const port = await freePort();
  log(`starting code-server on 127.0.0.1:${port}`);
  const server = spawn(
    codeServer,
    [
      '--bind-addr',
      `127.0.0.1:${port}`,
      '--auth',
      'none',
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--user-data-dir',
      userData,
      '--extensions-dir',
      extDir,
      ws,
    ],
    { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let serverLog = '';
  server.stdout.on('data', (d) => (serverLog += d));
  server.stderr.on('data', (d) => (serverLog += d));
  let browser;
  let passed = 0;
  let failed = 0;
  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 60_000, 'code-server /healthz');
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-dev-shm-usage',
      ],
    });
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}`);
    await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
    // The extension has activated once its status bar item is there (activation: workspaceContains Markdown).
    await page.locator('#workbench\\.parts\\.statusbar', { hasText: 'DocDistill' }).waitFor({ timeout: 60_000 });
    await page.waitForTimeout(1000);
    const helpers = makeHelpers(page, ws, home);
    const flowsDir = join(here, 'flows');
    const flows = readdirSync(flowsDir)
      .filter((f) => f.endsWith('.mjs'))
      .sort()
      .filter((f) => !only.length || only.some((o) => f.includes(o)));
    for (const f of flows) {
      const mod = await import(join(flowsDir, f));
      const ts = Date.now();
      try {
        log(`▶ ${f}: ${mod.title}`);
        await mod.run(helpers);
        passed++;
        log(`✔ ${f} (${((Date.now() - ts) / 1000).toFixed(1)} s)`);
      } catch (e) {
        failed++;
        log(`✖ ${f}: ${e?.stack ?? e}`);
        await page.screenshot({ path: join(outDir, `FAILED-${f.replace(/\.mjs$/, '')}.png`) }).catch(() => {});
        if (mod.critical) break;
      }
    }
  } catch (e) {
    failed++;
    log(`✖ harness: ${e?.stack ?? e}\n${serverLog.slice(-3000)}`);
  } finally {
    await browser?.close().catch(() => {});
    try {
      process.kill(-server.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    rmSync(home, { recursive: true, force: true });
  }
  console.log(
    `e2e: ${passed} passed, ${failed} failed (${((Date.now() - t0) / 1000).toFixed(0)} s; screenshots in ${outDir})`,
  );
  process.exit(failed ? 1 : 0);
}

function makeHelpers(page, ws, home) {
  const shot = async (name) => {
    await page.screenshot({ path: join(outDir, `${name}.png`) });
    log(`  screenshot ${name}.png`);
  };
  /** Runs a command from the palette by its full title. */
  const command = async (title) => {
    const input = page.locator('.quick-input-widget input');
    // F1 can be swallowed, or the palette closed again, while a webview has just been resized or
    // re-themed: give the workbench the focus and open it again.
    for (let attempt = 0; ; attempt++) {
      await page.keyboard.press('Escape');
      await page.keyboard.press('F1');
      try {
        await input.waitFor({ state: 'visible', timeout: attempt < 2 ? 3000 : 10_000 });
        await input.fill(`>${title}`, { timeout: 3000 });
        break;
      } catch (e) {
        if (attempt >= 2) throw e;
        const bar = await page.locator('#workbench\\.parts\\.statusbar').boundingBox();
        // an empty stretch of the status bar
        if (bar) await page.mouse.click(bar.x + bar.width * 0.55, bar.y + bar.height / 2);
        await page.waitForTimeout(500);
      }
    }
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
    await row.waitFor({ timeout: 15_000 });
    await page.keyboard.press('Enter');
  };
  /** The content frame of the webview panel whose heading is `heading` (webviews are two iframes deep). */
  const webview = async (heading) => {
    const end = Date.now() + 30_000;
    for (;;) {
      const n = await page.locator('iframe.webview.ready').count();
      for (let i = 0; i < n; i++) {
        const f = page.frameLocator(`iframe.webview.ready >> nth=${i}`).frameLocator('#active-frame');
        const h1 = await f
          .locator('h1')
          .first()
          .innerText({ timeout: 1000 })
          .catch(() => '');
        if (h1.trim() === heading) return f;
      }
      if (Date.now() > end) throw new Error(`no webview with heading "${heading}"`);
      await page.waitForTimeout(250);
    }
  };
  const statusBar = () => page.locator('#workbench\\.parts\\.statusbar');
  // The fixture docs are the first two example documents (their names depend on the demo model's world).
  const facts = JSON.parse(readFileSync(join(repo, 'examples', 'facts.json'), 'utf8'));
  const docs = facts.docs.slice(0, 2).map((d) => d.file);
  return { page, ws, home, shot, command, webview, statusBar, log, waitFor, facts, docs };
}

main().catch((e) => {
  console.error(e);
  console.log('e2e: 0 passed, 1 failed');
  process.exit(1);
});
