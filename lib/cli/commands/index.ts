import type { Command } from '../command.js';
import { infoCommand } from './info.js';
import { inferCommand } from './infer.js';
import { evalCommand } from './eval.js';
import { calibrateCommand } from './calibrate.js';
import { compareCommand } from './compare.js';
import { analyzeCommand } from './analyze.js';
import { convertCommand } from './convert.js';
import { serveCommand } from './serve.js';
import { benchCommand } from './bench.js';

/** Every CLI command, in the order `ptq4vm --help` lists them. */
export const commands: readonly Command[] = [infoCommand, inferCommand, evalCommand, calibrateCommand, compareCommand, convertCommand, serveCommand, analyzeCommand, benchCommand];
