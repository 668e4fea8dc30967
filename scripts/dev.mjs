#!/usr/bin/env node
// `npm run dev`: the server, restarted on every change, with the contract in the loop.
// - src/ changes: tsx watch restarts the server.
// - openapi/ changes (debounced): `npm run generate` (types, client, docs); once it has succeeded
//   the server restarts on the new contract. A failed generate is one line here (the whole output
//   in .cache/dev-generate.log) and the server keeps running the last good one.
// - `tsc --noEmit --watch` runs alongside on src/ and generated/: a handler the contract change
//   broke is a type error here a few seconds later.
// Ctrl-C (SIGINT) or SIGTERM stops all of it: every child runs in its own process group, which is
// signalled, awaited, and killed if it is still there after 15 s.
// `npm run dev` loads .env (node --env-file-if-exists); the children inherit the environment.
import { spawn } from 'node:child_process';
import { mkdirSync, watch, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isatty } from 'node:tty';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);
const cache = join(root, '.cache');
// The server's watcher restarts it when generated/docs.html is written: the last output of a
// generate, so one restart per generate, with every output in place (tsx watch ignores dot
// directories such as .cache/, and an unchanged generated/ would be rewritten anyway).
const restartOn = 'generated/docs.html';
const generateLog = join(cache, 'dev-generate.log');
const DEBOUNCE_MS = 300;
const STOP_TIMEOUT_MS = 15_000;

const colour = isatty(1) && !process.env.NO_COLOR;
const say = (message) => process.stdout.write(`${colour ? '\u001b[36m[dev]\u001b[39m' : '[dev]'} ${message}\n`);

mkdirSync(cache, { recursive: true });

/** A child in its own process group (so Ctrl-C reaches it once, from us), its output ours. */
const children = new Set();
function start(command, args) {
  const child = spawn(command, args, {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
    detached: true,
    env: process.env,
  });
  children.add(child);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  child.exited.then(({ code, signal }) => {
    children.delete(child);
    if (!stopping) {
      say(`${command.split('/').pop()} ${args.join(' ')} ended (${signal ?? `exit ${code}`}); stopping`);
      void stop(1);
    }
  });
  return child;
}

const server = start(bin('tsx'), ['watch', '--clear-screen=false', '--include', restartOn, 'src/main.ts']);
const typecheck = start(bin('tsc'), [
  '--noEmit',
  '--watch',
  '--preserveWatchOutput',
  '-p',
  'tsconfig.build.json',
  '--pretty',
  String(colour),
]);

// --- openapi/ → generate -------------------------------------------------------------------
let timer;
let running = false;
let again = false;
let generating;

function generate() {
  if (running) {
    again = true;
    return;
  }
  running = true;
  again = false;
  const started = Date.now();
  say('openapi/ changed: regenerating (npm run generate)');
  const child = spawn(process.execPath, [join(root, 'scripts', 'generate.mjs')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: process.env,
  });
  generating = child;
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  child.once('exit', (code, signal) => {
    generating = undefined;
    running = false;
    if (stopping) return;
    writeFileSync(generateLog, output);
    if (code === 0) {
      say(`regenerated in ${((Date.now() - started) / 1000).toFixed(1)} s; the server restarts on the new contract`);
    } else {
      say(
        `generate failed (${signal ?? `exit ${code}`}): ${firstError(output)} — the server keeps the last good contract; full output in ${generateLog.slice(root.length + 1)}`,
      );
    }
    if (again) generate();
  });
}

/** The line of a failed generate that says what is wrong (Redocly's error, else the last line). */
function firstError(output) {
  const lines = output
    .split('\n')
    // eslint-disable-next-line no-control-regex -- strips ANSI colour codes, which begin with ESC
    .map((line) => line.replace(/\u001b\[[0-9;]*m/g, '').trim())
    .filter(Boolean);
  return (
    lines.find((line) => /\berror\b|cannot|unexpected|not found|failed to/i.test(line) && !line.startsWith('at ')) ??
    lines.at(-1) ??
    'no output'
  );
}

const watcher = watch(join(root, 'openapi'), { recursive: true }, (_event, file) => {
  const name = String(file ?? '');
  // Editors' swap and backup files are not the contract.
  if (/(^|\/)\.|~$|\.swp$|\.tmp$/.test(name)) return;
  clearTimeout(timer);
  timer = setTimeout(generate, DEBOUNCE_MS);
});
say(`watching openapi/ (regenerate + restart), src/ (restart) and types (tsc --watch); Ctrl-C stops`);

// --- stopping ------------------------------------------------------------------------------
let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  clearTimeout(timer);
  watcher.close();
  const kill = (child, signal) => {
    try {
      process.kill(-child.pid, signal); // the whole group: tsx watch and the server it runs
    } catch {
      // already gone
    }
  };
  if (generating) kill(generating, 'SIGTERM');
  const all = [...children];
  for (const child of all) kill(child, 'SIGINT');
  const force = setTimeout(() => {
    say(`still running after ${STOP_TIMEOUT_MS / 1000} s: killing`);
    for (const child of all) kill(child, 'SIGKILL');
  }, STOP_TIMEOUT_MS);
  await Promise.all(all.map((child) => child.exited));
  clearTimeout(force);
  say('stopped');
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));
void server;
void typecheck;
