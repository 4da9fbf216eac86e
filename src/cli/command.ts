// The CLI's command table: each subcommand is one module that exports a Command.

export interface CommandContext {
  /** Where normal output goes (stdout). */
  out: (text: string) => void;
  /** Where progress and diagnostics go (stderr). */
  err: (text: string) => void;
  /** Aborted on Ctrl-C: long commands stop cleanly at the next safe point. */
  signal: AbortSignal;
}

export interface Command {
  name: string;
  /** One line for `docdistill --help`. */
  summary: string;
  /** Full usage text for `docdistill <name> --help`. */
  usage: string;
  /** Returns the process exit code. */
  run(args: string[], ctx: CommandContext): Promise<number>;
}

/** A user mistake: printed as one line without a stack trace, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}
