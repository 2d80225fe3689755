import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../backend/addon.js';
import { UsageError, type Command } from './command.js';
import { commands } from './commands/index.js';

function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

function overview(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: ptq4vm <command> [options]',
    '',
    'Post-training quantization (PTQ4VM) and INT8 inference for Visual Mamba models.',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Models and data sets may be given by path or by built-in name:',
    '  model vim-fmnist; data fmnist (Fashion-MNIST test set), fmnist-train (2000-image calibration subset).',
    '',
    "Run 'ptq4vm <command> --help' for a command's options.",
  ].join('\n');
}

function find(name: string): Command | undefined {
  return commands.find((c) => c.name === name);
}

/** Runs the CLI; returns the exit code (0 ok, 1 error, 2 usage). Never throws. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
      const target = name === 'help' && rest[0] ? find(rest[0]) : undefined;
      if (name === 'help' && rest[0] && !target) throw new UsageError(`unknown command ${JSON.stringify(rest[0])}`);
      process.stdout.write((target ? target.usage : overview()) + '\n');
      return name === undefined ? 2 : 0;
    }
    if (name === '--version' || name === '-v') {
      process.stdout.write(version() + '\n');
      return 0;
    }
    const cmd = find(name);
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(name)}; run 'ptq4vm --help'`);
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(cmd.usage + '\n');
      return 0;
    }
    return await cmd.run(rest);
  } catch (e) {
    const err = e as Error;
    if (err instanceof UsageError) {
      process.stderr.write(`ptq4vm: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`ptq4vm: ${oneLine(err)}\n`);
    if (process.env.PTQ4VM_DEBUG) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

function oneLine(err: Error): string {
  const msg = err && typeof err.message === 'string' ? err.message : String(err);
  return msg.split('\n')[0]!;
}
