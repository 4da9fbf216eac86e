// dist/worker.js: the background process that runs all model work for the extension.
//   node dist/worker.js --stdio --parent-pid N
// stdout carries the protocol only; everything else goes to stderr. The worker exits when its
// parent dies, when stdin closes, or on the shutdown request.
import { inspect } from 'node:util';
import { serve } from './server';

function redirectConsole(): void {
  const toErr = (...a: unknown[]) =>
    process.stderr.write(a.map((x) => (typeof x === 'string' ? x : inspect(x))).join(' ') + '\n');
  console.log = toErr;
  console.info = toErr;
  console.debug = toErr;
  console.warn = toErr;
}

export function main(argv: string[]): void {
  if (!argv.includes('--stdio')) {
    process.stderr.write('usage: worker --stdio [--parent-pid N]\n');
    process.exit(2);
  }
  redirectConsole();
  const i = argv.indexOf('--parent-pid');
  const parent = i >= 0 ? Number(argv[i + 1]) : undefined;
  let exiting = false;
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    void server.dispose().finally(() => process.exit(code));
    setTimeout(() => process.exit(code), 5000).unref();
  };
  const server = serve(process.stdin, process.stdout, exit);
  process.stdin.on('end', () => exit(0));
  process.stdin.on('close', () => exit(0));
  if (parent && Number.isInteger(parent) && parent > 0) {
    setInterval(() => {
      try {
        process.kill(parent, 0);
      } catch {
        process.stderr.write(`parent ${parent} is gone; exiting\n`);
        exit(0);
      }
    }, 2000).unref();
  }
  process.on('uncaughtException', (e) => {
    process.stderr.write(`uncaught: ${e.stack ?? e}\n`);
  });
  process.on('SIGTERM', () => exit(0));
}

if (require.main === module) main(process.argv.slice(2));
