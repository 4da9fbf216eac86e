// Every subcommand of `docdistill`, in the order `--help` lists them.
import type { Command } from './command';
import { scoreCommand } from './score';
import { generateCommand } from './generate';
import { demoModelCommand } from './demoModel';
import { makeModelCommand } from './makeModel';
import { distillCommand } from './distill';
import { demoCommand } from './demo';
import { trainCommand, mergeCommand } from './train';
import { chatCommand, evalCommand } from './chat';

export const commands: Command[] = [
  demoCommand,
  distillCommand,
  evalCommand,
  chatCommand,
  generateCommand,
  scoreCommand,
  trainCommand,
  mergeCommand,
  makeModelCommand,
  demoModelCommand,
];
