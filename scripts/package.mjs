// npm run package: a platform VSIX carrying only this platform's onnxruntime binaries.
// 1. production build (esbuild --production);
// 2. stage exactly the files .vscodeignore allows (with ${PLATFORM}/${ARCH} filled in) in a clean
//    folder, with a package.json whose only dependency is onnxruntime-node (everything else is
//    bundled into dist/);
// 3. @vscode/vsce package --target <platform-arch> in that folder;
// 4. list the VSIX (a zip) to check what is inside, and report its size.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { inflateRawSync } from 'node:zlib';

const root = process.cwd();
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const platform = process.env.VSCE_PLATFORM ?? process.platform;
const arch = process.env.VSCE_ARCH ?? process.arch;
const target = `${{ win32: 'win32', darwin: 'darwin', linux: 'linux' }[platform] ?? platform}-${arch}`;
const step = (s) => console.log(`package: ${s}`);

step('production build');
execFileSync(process.execPath, ['esbuild.mjs', '--production'], { stdio: 'inherit' });

// Allow-list → regexes.
const rules = readFileSync('.vscodeignore', 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l.startsWith('!'))
  .map((l) => l.slice(1).replaceAll('${PLATFORM}', platform).replaceAll('${ARCH}', arch));
const esc = (q) => q.replace(/[.+^$()|[\]\\{}?]/g, '\\$&');
const toRe = (g) =>
  new RegExp(
    '^' +
      g
        .split('**/')
        .map((a) =>
          a
            .split('**')
            .map((p) => p.split('*').map(esc).join('[^/]*'))
            .join('.*'),
        )
        .join('(?:.*/)?') +
      '$',
  );
const allow = rules.map(toRe);
function walk(dir, acc = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === '.git' || e.name === '.checkpoint' || p === join(root, 'node_modules', '.cache')) continue;
      walk(p, acc);
    } else acc.push(relative(root, p).split('\\').join('/'));
  }
  return acc;
}
const roots = [
  'package.json',
  'package.nls.json',
  'l10n',
  'README.md',
  'CHANGELOG.md',
  'LICENSE',
  'dist',
  'media',
  'examples',
  'node_modules/onnxruntime-node',
  'node_modules/onnxruntime-common',
];
const files = roots
  .flatMap((r) => (existsSync(r) ? (statSync(r).isDirectory() ? walk(join(root, r)) : [r]) : []))
  .filter((f) => allow.some((re) => re.test(f)));
for (const need of [
  'dist/extension.js',
  'dist/worker.js',
  'dist/webview/dashboard.js',
  'dist/webview/chat.js',
  `node_modules/onnxruntime-node/bin/napi-v6/${platform}/${arch}/onnxruntime_binding.node`,
  'media/demo-model/model.safetensors',
]) {
  if (!files.includes(need)) throw new Error(`package: ${need} is missing (build first, or the allow-list misses it)`);
}

const stage = join(root, 'dist-vsix', 'stage');
rmSync(stage, { recursive: true, force: true });
for (const f of files) {
  mkdirSync(dirname(join(stage, f)), { recursive: true });
  cpSync(f, join(stage, f));
}
// Only onnxruntime-node stays a dependency; its own install-time dependencies are not needed.
const { devDependencies: _d, scripts: _s, ...rest } = pkg;
writeFileSync(
  join(stage, 'package.json'),
  JSON.stringify({ ...rest, dependencies: { 'onnxruntime-node': pkg.dependencies['onnxruntime-node'] } }, null, 2),
);
const ortPkgPath = join(stage, 'node_modules', 'onnxruntime-node', 'package.json');
const ortPkg = JSON.parse(readFileSync(ortPkgPath, 'utf8'));
delete ortPkg.scripts;
ortPkg.dependencies = { 'onnxruntime-common': ortPkg.dependencies['onnxruntime-common'] };
writeFileSync(ortPkgPath, JSON.stringify(ortPkg, null, 2));
writeFileSync(join(stage, '.vscodeignore'), '**/*.map\n**/*.d.ts\n');

const outDir = join(root, 'dist-vsix');
const out = join(outDir, `${pkg.name}-${pkg.version}-${target}.vsix`);
rmSync(out, { force: true });
step(`vsce package --target ${target}`);
const vsce = join(root, 'node_modules', '@vscode', 'vsce', 'vsce');
execFileSync(
  process.execPath,
  [vsce, 'package', '--target', target, '--out', out, '--allow-missing-repository', '--skip-license'],
  { cwd: stage, stdio: 'inherit' },
);

// Read the zip's central directory to check the contents.
function zipEntries(path) {
  const b = readFileSync(path);
  let eocd = b.length - 22;
  while (eocd >= 0 && b.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  const n = b.readUInt16LE(eocd + 10);
  let p = b.readUInt32LE(eocd + 16);
  const names = [];
  for (let i = 0; i < n; i++) {
    const nameLen = b.readUInt16LE(p + 28);
    const extra = b.readUInt16LE(p + 30);
    const comment = b.readUInt16LE(p + 32);
    names.push({ name: b.toString('utf8', p + 46, p + 46 + nameLen), size: b.readUInt32LE(p + 24) });
    p += 46 + nameLen + extra + comment;
  }
  return names;
}
void inflateRawSync;
const entries = zipEntries(out);
const names = entries.map((e) => e.name);
const otherBinaries = names.filter(
  (n) => n.includes('/bin/napi-v6/') && !n.includes(`/bin/napi-v6/${platform}/${arch}/`),
);
if (otherBinaries.length)
  throw new Error(`package: other platforms' binaries in the VSIX: ${otherBinaries.slice(0, 5).join(', ')}`);
for (const need of [
  'extension/dist/extension.js',
  'extension/dist/worker.js',
  'extension/node_modules/onnxruntime-common/dist/cjs/package.json',
  `extension/node_modules/onnxruntime-node/bin/napi-v6/${platform}/${arch}/onnxruntime_binding.node`,
  'extension/node_modules/onnxruntime-common/dist/cjs/index.js',
]) {
  if (!names.includes(need)) throw new Error(`package: ${need} is not in the VSIX`);
}
if (names.some((n) => n.endsWith('.map') || n.includes('/src/') || n.includes('/test/')))
  throw new Error('package: sources, tests or source maps leaked into the VSIX');
const mb = statSync(out).size / 2 ** 20;
console.log(`package: ${relative(root, out)} — ${mb.toFixed(1)} MB, ${entries.length} files (${target})`);
if (mb >= 40) console.warn(`package: WARNING: the VSIX is ${mb.toFixed(1)} MB, over the 40 MB target`);
rmSync(stage, { recursive: true, force: true });
