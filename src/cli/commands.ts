// Every subcommand of `docdistill`, in the order `--help` lists them.
import type { Command } from './command';
import { scoreCommand } from './score';
import { generateCommand } from './generate';

export const commands: Command[] = [scoreCommand, generateCommand];
