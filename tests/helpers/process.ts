import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { waitUntilServing } from '../../scripts/server-process.js';

/**
 * A new temporary directory holding a copy of the migrated PGlite data directory jest's globalSetup
 * wrote (templates.ts), for a process's PGLITE_DIR: the server starts on an embedded database of
 * its own without running initdb and the migrations (about 4 s of CPU per start). The caller
 * removes it. A test about a first start on an empty directory makes its own with mkdtemp.
 */
export function migratedPgliteDir(prefix: string): string {
  const template = process.env.TEST_PGLITE_DATA_DIR;
  if (!template)
    throw new Error('TEST_PGLITE_DATA_DIR is not set: run the tests through jest (its globalSetup makes it)');
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cpSync(template, dir, { recursive: true });
  return dir;
}

/**
 * Where `file`, a TypeScript file of src/, is as the JavaScript jest's globalSetup compiled it to
 * (TEST_PROCESS_BUILD, templates.ts); undefined for any other file, or outside jest.
 */
function compiled(file: string): string | undefined {
  const build = process.env.TEST_PROCESS_BUILD;
  if (build === undefined || !file.startsWith('src/') || !file.endsWith('.ts')) return undefined;
  return join(build, file.replace(/\.ts$/, '.js'));
}

/**
 * V8's flags for the processes the tests start: WebAssembly compiled by its baseline compiler only.
 * By default V8 also recompiles PGlite's hot PostgreSQL functions with its optimising compiler, on
 * background threads: about 1 s of CPU per start (4.3 s → 3.3 s to listening and stopped), which a
 * process living a few seconds never earns back. The code is the same; only how fast it runs
 * differs, and these tests are about behaviour. A cluster's workers inherit it (execArgv).
 */
const TEST_PROCESS_FLAGS = ['--liftoff-only'];

/**
 * The arguments that make `node` run `file`, a TypeScript file of this repository, with `imports`
 * imported first: files of src/ as compiled (`compiled`), anything else (a fixture, a script)
 * through tsx; `TEST_PROCESS_FLAGS` first.
 */
export function entry(file: string, imports: string[] = []): string[] {
  const js = compiled(file);
  const imported = imports.flatMap((i) => ['--import', compiled(i) ? pathToFileURL(compiled(i)!).href : `./${i}`]);
  if (js !== undefined && imports.every((i) => compiled(i) !== undefined))
    return [...TEST_PROCESS_FLAGS, ...imported, js];
  return [...TEST_PROCESS_FLAGS, '--import', 'tsx', ...imported, file];
}

/**
 * The real entry point (src/main.ts) as its own process, as a process manager would run it
 * (production, JSON logs, no shedding for event-loop delay: these tests are about other things);
 * with `preload`, started as `npm start` starts it, the tracing preload imported first; `nodeArgs`
 * go before everything else (e.g. another `--import`).
 * `output`: stdout and stderr as they came; `stdout`: stdout alone (the log lines).
 *
 * It listens on PORT=0 and the URL is the port its own "listening" line names: with jest's
 * workers side by side, a port found free and then handed to the child could be taken by another
 * file's server first, and this file would have talked to that one. A server that did not start
 * within `timeoutMs` (a PGlite start on a loaded two-core machine took over 20 s) is stopped, or
 * jest would wait on it for ever.
 */
export async function startMain(
  env: Record<string, string>,
  {
    timeoutMs = 45_000,
    preload = false,
    nodeArgs = [],
  }: { timeoutMs?: number; preload?: boolean; nodeArgs?: string[] } = {},
): Promise<{
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  output: () => string;
  stdout: () => string;
}> {
  let output = '';
  let stdout = '';
  // `preload`: as `npm start` runs it, with the tracing preload first (src/telemetry/preload.ts).
  const args = entry('src/main.ts', preload ? ['src/telemetry/preload.ts'] : []);
  const child = spawn(process.execPath, [...nodeArgs, ...args], {
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      NODE_ENV: 'production',
      LOG_FORMAT: 'json',
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '600000',
      PORT: '0',
      HOST: '127.0.0.1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (chunk) => {
    output += chunk;
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const failure = () => `the server did not start within ${timeoutMs} ms:\n${output}`;
  try {
    const deadline = Date.now() + timeoutMs;
    let port: string | undefined;
    while ((port = /"message":"listening"[^\n]*"port":(\d+)/.exec(stdout)?.[1]) === undefined) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(failure());
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const url = `http://127.0.0.1:${port}`;
    await waitUntilServing(`${url}/health/ready`, child, { timeoutMs: Math.max(deadline - Date.now(), 1000), failure });
    return { child, url, exited, output: () => output, stdout: () => stdout };
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }
}

/**
 * `node <args>` run to its end (its first argument a file as `entry` runs it, else through tsx), with `env` over the test's environment (NODE_OPTIONS
 * cleared: jest's would load its VM-modules flag into the child): the exit code and everything the
 * process wrote (resolved on 'close', once both pipes are drained, so no last line is missed).
 */
export function runToEnd(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [first = '', ...rest] = args;
  const child = spawn(process.execPath, [...entry(first), ...rest], {
    env: { ...process.env, NODE_OPTIONS: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}
