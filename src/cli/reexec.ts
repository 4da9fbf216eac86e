// Which CLI runs start again with DocDistill's malloc settings (see runCli in main.ts).
import { needsLeanMalloc } from '../common/leanMalloc';

/** Commands that load a model, and may train one: they run with DocDistill's malloc settings. */
const MODEL_COMMANDS = new Set([
  'train',
  'merge',
  'distill',
  'generate',
  'score',
  'chat',
  'eval',
  'demo',
  'demo-model',
]);

/** Whether `docdistill <argv>` runs itself again as a child process with the malloc settings. */
export function reexecForMalloc(argv: readonly string[], env: NodeJS.ProcessEnv, platform = process.platform): boolean {
  return (
    MODEL_COMMANDS.has(argv[0] ?? '') &&
    !argv.includes('--help') &&
    !argv.includes('-h') &&
    needsLeanMalloc(env, platform)
  );
}
