// Every subcommand of `docdistill`, in the order `--help` lists them.
import type { Command } from './command';
import { scoreCommand } from './score';
import { generateCommand } from './generate';
import { demoModelCommand } from './demoModel';
import { makeModelCommand } from './makeModel';

export const commands: Command[] = [scoreCommand, generateCommand, demoModelCommand, makeModelCommand];
