#!/usr/bin/env node
import { main } from '../dist/lib/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    // main() reports its own errors; reaching here is a bug in the CLI itself.
    process.stderr.write(`ptq4vm: internal error: ${err && err.message ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
