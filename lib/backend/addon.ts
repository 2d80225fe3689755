import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: the nearest folder above this module holding build/ or package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'native'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the package root');
    dir = up;
  }
}

let cached: Record<string, unknown> | undefined;

/**
 * The native addon, loaded once per thread. Each kernel family's TS module narrows it to the
 * functions it uses (`addon() as unknown as GemmBinding`). PTQ4VM_ADDON overrides the path.
 */
export function addon(): Record<string, unknown> {
  if (cached) return cached;
  const path = process.env.PTQ4VM_ADDON ?? join(packageRoot(), 'build', 'Release', 'ptq4vm.node');
  if (!existsSync(path)) {
    throw new Error(`native addon not found at ${path}; build it with "npm run build:addon"`);
  }
  const require = createRequire(import.meta.url);
  cached = require(path) as Record<string, unknown>;
  return cached;
}
