#!/usr/bin/env node
// Prints the native sources of one group for binding.gyp (node-gyp has no globbing):
//   binding | portable | avx2 | avx512 | vnni
import { readdirSync } from 'node:fs';

const group = process.argv[2];
const list = (dir, re) => readdirSync(dir).filter((f) => re.test(f)).sort().map((f) => `${dir}/${f}`);
const isa = /_(avx2|avx512|vnni)\.cpp$/;
const groups = {
  binding: () => list('native/binding', /\.cc$/),
  portable: () => list('native/cpu', /\.cpp$/).filter((f) => !isa.test(f)),
  avx2: () => list('native/cpu', /_avx2\.cpp$/),
  avx512: () => list('native/cpu', /_avx512\.cpp$/),
  vnni: () => list('native/cpu', /_vnni\.cpp$/),
};
if (!groups[group]) {
  console.error(`list-sources: unknown group ${group}`);
  process.exit(2);
}
console.log(groups[group]().join(' '));
