// Module hooks for loaded-modules.mjs (they run on the loader's own thread).
import { appendFileSync } from 'node:fs';

let file;

export function initialize(path) {
  file = path;
}

export async function load(url, context, next) {
  if (file !== undefined) appendFileSync(file, `${url}\n`);
  return next(url, context);
}
