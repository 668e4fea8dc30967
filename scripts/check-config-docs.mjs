#!/usr/bin/env node
// Keeps docs/configuration.md and .env.example in step with the environment variables the code reads.
//   node scripts/check-config-docs.mjs [root]      (root: a checkout; default this one, or CONFIG_DOCS_ROOT)
// Fails (exit 1, one line per problem) when:
// - a variable read in src/ is missing from the page's tables or from .env.example, or one read in
//   scripts/ is missing from the page's tables;
// - the page's tables name a variable nothing reads (src/, scripts/, tests/, bench/, examples/), or
//   .env.example names one src/ does not read, or the page lists one twice;
// - for an integer read in src/config.ts with a literal default, the page's row lacks that default or
//   its bounds (`min–max`), or .env.example shows another value; for a one-of read, the row lacks
//   one of its values.
// What counts as a read (outside comments that open a line): `process.env.X`, `process.env['X']`, `env.X`, `env['X']` (also with `?.`),
// and a call with a literal name, `read('X')`, `int('X', …)`, to a helper whose first parameter is
// `name: string` (how src/config.ts reads its env object: every helper ends in `env[name]`).
// The page's tables are those whose first header cell is "Variable"; the names are the backticked
// words in a row's first cell. .env.example's names are those assigned, commented out or not (`# X=…`).
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(
  process.argv[2] ?? process.env.CONFIG_DOCS_ROOT ?? join(dirname(fileURLToPath(import.meta.url)), '..'),
);
const PAGE = 'docs/configuration.md';
const EXAMPLE = '.env.example';
const CONFIG = 'src/config.ts';
const problems = [];
const NAME = '[A-Z][A-Z0-9_]*';

/** Source files under `dir` (relative to root), without node_modules, dist or declaration files. */
function sources(dir) {
  const out = [];
  const walk = (abs) => {
    let entries;
    try {
      entries = readdirSync(abs, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (entry.name === 'node_modules' || entry.name === 'dist' || entry.name.startsWith('.')) continue;
      const path = join(abs, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (/\.(c|m)?[jt]s$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(path);
    }
  };
  walk(join(root, dir));
  return out;
}

const ENV_ACCESS = new RegExp(
  String.raw`\b(?:process\.)?env(?:\?\.|\.)(${NAME})\b|\b(?:process\.)?env(?:\?\.)?\[\s*['"\`](${NAME})['"\`]\s*\]`,
  'g',
);
const HELPER =
  /\b(?:function\s+([A-Za-z_$][\w$]*)\s*(?:<[^()]*?>)?|([A-Za-z_$][\w$]*)\s*[:=]\s*(?:<[^()]*?>\s*)?)\(\s*name\s*:\s*string\b/g;

/** name → [files] of the variables read in `source` (comments that open a line left out). */
function readsIn(source, file, into) {
  const text = source.replace(/^[ \t]*\/\*[\s\S]*?\*\//gm, '').replace(/^[ \t]*\/\/.*$/gm, '');
  const add = (name) => into.set(name, [...(into.get(name) ?? []), file]);
  for (const m of text.matchAll(ENV_ACCESS)) add(m[1] ?? m[2]);
  const helpers = new Set([...text.matchAll(HELPER)].map((m) => m[1] ?? m[2]));
  if (helpers.size > 0) {
    const call = new RegExp(String.raw`\b(${[...helpers].join('|')})\(\s*['"](${NAME})['"]`, 'g');
    for (const m of text.matchAll(call)) add(m[2]);
  }
}

function readsUnder(dirs) {
  const found = new Map();
  for (const dir of dirs)
    for (const file of sources(dir)) readsIn(readFileSync(file, 'utf8'), relative(root, file), found);
  return found;
}

function readText(rel) {
  try {
    return readFileSync(join(root, rel), 'utf8');
  } catch {
    problems.push(`${rel}: missing (looked in ${root})`);
    return undefined;
  }
}

const srcReads = readsUnder(['src']);
// The operating system's own variables, which a script passes on to a process it starts: not settings of ours.
const SYSTEM = ['PATH', 'HOME'];
const scriptReads = readsUnder(['scripts']);
for (const name of SYSTEM) scriptReads.delete(name);
const otherReads = readsUnder(['tests', 'bench', 'examples']);
const configText = readText(CONFIG) ?? '';
if (![...srcReads.values()].some((files) => files.includes(CONFIG)))
  problems.push(
    `${CONFIG}: no variable read found; this script's patterns no longer match how it reads the environment`,
  );

// The page: name → its table row(s).
const pageText = readText(PAGE);
const pageRows = new Map();
if (pageText !== undefined) {
  let inTable = false;
  for (const [index, line] of pageText.split('\n').entries()) {
    if (!line.startsWith('|')) {
      inTable = false;
      continue;
    }
    const cells = line
      .split(/(?<!\\)\|/)
      .slice(1, -1)
      .map((c) => c.trim());
    if (!inTable) {
      inTable = cells[0] === 'Variable'; // a header row
      continue;
    }
    if (/^:?-+:?$/.test(cells[0] ?? '')) continue;
    for (const m of (cells[0] ?? '').matchAll(new RegExp(String.raw`\`(${NAME})\``, 'g'))) {
      if (pageRows.has(m[1]))
        problems.push(`${PAGE}:${index + 1}: ${m[1]} is listed twice (first on line ${pageRows.get(m[1]).line})`);
      else pageRows.set(m[1], { line: index + 1, cells });
    }
  }
  if (pageRows.size === 0) problems.push(`${PAGE}: no table with a "Variable" column found`);
}

// .env.example: name → shown value.
const exampleText = readText(EXAMPLE);
const exampleValues = new Map();
if (exampleText !== undefined)
  for (const m of exampleText.matchAll(new RegExp(String.raw`^#?[ \t]*(${NAME})=(.*)$`, 'gm')))
    exampleValues.set(m[1], m[2].trim());

const where = (files) => [...new Set(files)].join(', ');
if (pageText !== undefined)
  for (const [name, files] of [...srcReads, ...scriptReads])
    if (!pageRows.has(name)) problems.push(`${PAGE}: ${name} (read in ${where(files)}) is missing from its tables`);
if (exampleText !== undefined)
  for (const [name, files] of srcReads)
    if (!exampleValues.has(name)) problems.push(`${EXAMPLE}: ${name} (read in ${where(files)}) is missing`);
for (const [name, { line }] of pageRows)
  if (!srcReads.has(name) && !scriptReads.has(name) && !otherReads.has(name))
    problems.push(`${PAGE}:${line}: ${name} is read nowhere in src/, scripts/, tests/, bench/ or examples/`);
for (const name of exampleValues.keys())
  if (!srcReads.has(name)) problems.push(`${EXAMPLE}: ${name} is not read in src/`);

// Defaults, bounds and choices written as literals in src/config.ts.
const constants = new Map();
/** `10 * 1024 ** 2`, `600_000`, or a constant (`DEFAULT_X`, `DEFAULT_X.field`) defined so in config.ts; else undefined. */
function evaluate(expression) {
  const text = expression
    .trim()
    .replace(/\b[A-Z][A-Z0-9_]*(?:\.\w+)?\b/g, (id) => (constants.has(id) ? `(${constants.get(id)})` : id));
  if (!/^[\d_\s*+()-]+$/.test(text)) return undefined;
  try {
    const value = Function(`"use strict"; return (${text})`)();
    return Number.isSafeInteger(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
for (const m of configText.matchAll(/^(?:export )?const ([A-Z][A-Z0-9_]*)(?::[^=\n]*)? = ([^;\n{]+);/gm)) {
  const value = evaluate(m[2]);
  if (value !== undefined) constants.set(m[1], value);
}
for (const m of configText.matchAll(
  /^(?:export )?const ([A-Z][A-Z0-9_]*)(?::[^=\n]*)? = (?:Object\.freeze\()?\{([^}]*)\}/gm,
))
  for (const field of m[2].matchAll(/^\s*(\w+):\s*([^,\n]+),?\s*$/gm)) {
    const value = evaluate(field[2]);
    if (value !== undefined) constants.set(`${m[1]}.${field[1]}`, value);
  }
const rowText = (name) => pageRows.get(name)?.cells.slice(1).join(' | ') ?? '';
const hasNumber = (text, n) => new RegExp(String.raw`(^|[^\d.])${n}([^\d.]|$)`).test(text);
for (const m of configText.matchAll(
  new RegExp(String.raw`\bint\(\s*'(${NAME})',\s*([^,]+),\s*([^,]+),\s*([^)]+?)\s*,?\s*\)`, 'g'),
)) {
  const [, name, fallbackText, minText, maxText] = m;
  const [fallback, min, max] = [evaluate(fallbackText), evaluate(minText), evaluate(maxText)];
  if (pageRows.has(name)) {
    const { line, cells } = pageRows.get(name);
    if (fallback !== undefined && !hasNumber(cells[1] ?? '', fallback))
      problems.push(`${PAGE}:${line}: ${name}'s default is ${fallback} in ${CONFIG}, not in the row's Default cell`);
    if (min !== undefined && max !== undefined && !rowText(name).includes(`${min}–${max}`))
      problems.push(`${PAGE}:${line}: ${name} accepts ${min}–${max} in ${CONFIG}; the row does not say so`);
  }
  const shown = exampleValues.get(name);
  if (fallback !== undefined && shown !== undefined && shown !== '' && shown !== String(fallback))
    problems.push(`${EXAMPLE}: ${name}=${shown}, but its default in ${CONFIG} is ${fallback}`);
}
for (const m of configText.matchAll(new RegExp(String.raw`\boneOf\(\s*'(${NAME})',\s*\[([^\]]*)\]`, 'g'))) {
  const [, name, list] = m;
  if (!pageRows.has(name)) continue;
  for (const value of [...list.matchAll(/'([^']*)'/g)].map((v) => v[1]))
    if (!rowText(name).includes(`\`${value}\``))
      problems.push(
        `${PAGE}:${pageRows.get(name).line}: ${name} accepts \`${value}\` in ${CONFIG}; the row does not name it`,
      );
}

if (problems.length > 0) {
  for (const problem of problems) process.stderr.write(`check-config-docs: ${problem}\n`);
  process.exit(1);
}
process.stdout.write(
  `check-config-docs: ${pageRows.size} variables on ${PAGE}, ${srcReads.size} read in src/ and all in ${EXAMPLE}: in step\n`,
);
