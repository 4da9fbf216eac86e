// `docdistill`: the DocDistill pipeline without VS Code.
import { commands } from './commands';
import { UsageError, type CommandContext } from './command';
import { version } from '../../package.json';
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { leanMallocEnv } from '../common/leanMalloc';
import { reexecForMalloc } from './reexec';

function help(): string {
  const width = Math.max(8, ...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    `docdistill ${version}: teach a local language model what is in your Markdown docs.`,
    '',
    'Usage: docdistill <command> [options]',
    '',
    'Commands:',
    ...(lines.length ? lines : ['  (none yet)']),
    '',
    'Run "docdistill <command> --help" for the options of one command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help() + '\n');
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(version + '\n');
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`docdistill: unknown command '${name}'. Run "docdistill --help" for the list.\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.usage.trimEnd() + '\n');
    return 0;
  }
  const abort = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write('\ndocdistill: stopping at the next safe point (Ctrl-C again to quit now)\n');
      abort.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);
  const ctx: CommandContext = {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    signal: abort.signal,
  };
  try {
    return await cmd.run(rest, ctx);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`docdistill ${name}: ${e.message}\n`);
      return 2;
    }
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`docdistill ${name}: ${msg}\n`);
    if (process.env.DOCDISTILL_DEBUG) process.stderr.write(`${(e as Error)?.stack ?? ''}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/**
 * The process entry (bin/docdistill.js, dist/cli.js). glibc reads its malloc tunables only at
 * start-up, so a model command started without DocDistill's (src/common/leanMalloc.ts) runs again
 * as a child process with them; this process waits and exits with the child's code. Ctrl-C reaches
 * both through the terminal, so this one ignores it and lets the child stop at a safe point;
 * SIGTERM and SIGHUP are passed on.
 */
export async function runCli(argv: string[], script: string): Promise<number> {
  if (!reexecForMalloc(argv, process.env)) return main(argv);
  const child = spawn(process.execPath, [...process.execArgv, script, ...argv], {
    stdio: 'inherit',
    env: leanMallocEnv(process.env),
  });
  const ignore = () => {};
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const onTerm = forward('SIGTERM'),
    onHup = forward('SIGHUP');
  process.on('SIGINT', ignore);
  process.on('SIGTERM', onTerm);
  process.on('SIGHUP', onHup);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1)));
    });
  } catch {
    return main(argv); // could not start a child: run here, with the defaults
  } finally {
    process.off('SIGINT', ignore);
    process.off('SIGTERM', onTerm);
    process.off('SIGHUP', onHup);
  }
}

if (require.main === module) {
  runCli(process.argv.slice(2), __filename).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`docdistill: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
