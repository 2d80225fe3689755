import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Wrong usage of a command: reported with exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Full usage text (`ptq4vm help <name>`, `ptq4vm <name> --help`). */
  usage: string;
  run(argv: string[]): Promise<number>;
}

type Options = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: false }>;

/** Parsed option values: strings for string options, booleans for flags; absent ones undefined. */
export type OptionValues<O extends Options> = { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string };

/** Strict option parsing; unknown flags and missing values become UsageErrors. */
export function parseOptions<O extends Options>(argv: string[], options: O, opts: { positionals?: number } = {}): { values: OptionValues<O>; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: options as ParseArgsConfig['options'], strict: true, allowPositionals: (opts.positionals ?? 0) > 0 });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!);
  }
  if (parsed.positionals.length > (opts.positionals ?? 0)) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[opts.positionals ?? 0])}`);
  }
  return { values: parsed.values as OptionValues<O>, positionals: parsed.positionals };
}

export function intOption(value: string | undefined, name: string, def: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return def;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${name} must be an integer, got ${JSON.stringify(value)}`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name} must be in [${min}, ${max}], got ${n}`);
  return n;
}

export function floatOption(value: string | undefined, name: string, def: number, min = -Infinity, max = Infinity): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got ${JSON.stringify(value)}`);
  if (n < min || n > max) throw new UsageError(`--${name} must be in [${min}, ${max}], got ${n}`);
  return n;
}

export function choiceOption<T extends string>(value: string | undefined, name: string, choices: readonly T[], def: T): T {
  if (value === undefined) return def;
  if (!(choices as readonly string[]).includes(value)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

export function requireOption(value: string | undefined, name: string): string {
  if (value === undefined || value === '') throw new UsageError(`--${name} is required`);
  return value;
}
