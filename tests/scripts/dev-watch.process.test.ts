import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { projectRoot } from '../../src/http/contract.js';
import { migratedPgliteDir } from '../helpers/process.js';

// `npm run dev` runs in a copy of the checkout (node_modules linked): the test edits the contract,
// which must not touch the real openapi/ that others are working in.
const root = projectRoot();
const copy = mkdtempSync(join(tmpdir(), 'tasks-dev-'));
for (const entry of [
  'package.json',
  'tsconfig.json',
  'tsconfig.build.json',
  'redocly.yaml',
  'src',
  'openapi',
  'scripts',
  'generated',
  'lint',
]) {
  cpSync(join(root, entry), join(copy, entry), { recursive: true });
}
mkdirSync(join(copy, 'packages', 'client'), { recursive: true });
cpSync(join(root, 'packages', 'client', 'src'), join(copy, 'packages', 'client', 'src'), { recursive: true });
symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'));
// The embedded database starts migrated (a copy of jest's template) so the first start is quick;
// the test is about the watch loop, not a first start.
const pgliteDir = migratedPgliteDir('tasks-dev-pglite-');

let dev: ChildProcess | undefined;
afterAll(async () => {
  // After a failure: stop dev as Ctrl-C would, then kill whatever it left (its children run in
  // process groups of their own).
  if (dev?.exitCode === null) {
    dev.kill('SIGINT');
    await new Promise((resolve) => setTimeout(resolve, 5000));
  }
  for (const pid of processesInCopy()) process.kill(pid, 'SIGKILL');
  rmSync(copy, { recursive: true, force: true });
  rmSync(pgliteDir, { recursive: true, force: true });
});

/** Processes whose working directory is the copy: dev and everything it started. */
function processesInCopy(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return readlinkSync(`/proc/${pid}/cwd`) === copy;
      } catch {
        return false; // gone, or not ours to read
      }
    })
    .map(Number);
}

describe('npm run dev', () => {
  it('regenerates and restarts on a contract change, reports a broken contract in one line and a broken handler as a type error, and leaves nothing behind on Ctrl-C', async () => {
    let output = '';
    dev = spawn(process.execPath, ['scripts/dev.mjs'], {
      cwd: copy,
      env: {
        ...process.env,
        NODE_OPTIONS: '',
        NODE_ENV: 'development',
        LOG_FORMAT: 'json',
        // Each start takes a free port and says which (a port found free here could be taken by
        // another jest worker's server before this one listens).
        PORT: '0',
        HOST: '127.0.0.1',
        PGLITE_DIR: pgliteDir,
        JWT_SECRET: randomBytes(32).toString('base64url'),
        AUTH_BUILTIN: 'false',
        WEBHOOK_WORKER: 'off',
        OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '600000',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    dev.stdout!.on('data', (chunk) => (output += chunk));
    dev.stderr!.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => dev!.on('exit', (code) => resolve(code)));
    const count = (pattern: RegExp) => output.match(new RegExp(pattern, 'g'))?.length ?? 0;
    // Generous: the dev server, generate and tsc --watch share two cores with the other test files,
    // and on a loaded machine the first start alone took over 20 s. This tests behaviour, not speed.
    const until = async (what: string, done: () => boolean, ms = 60_000) => {
      const deadline = Date.now() + ms;
      while (!done()) {
        if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms; output:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    const listening = /"message":"listening"/;
    const url = () =>
      `http://127.0.0.1:${[...output.matchAll(/"message":"listening"[^\n]*"port":(\d+)/g)].at(-1)?.[1]}`;

    await until('server', () => count(listening) === 1);
    await until('type check', () => /Found 0 errors\. Watching for file changes/.test(output));

    // A contract change: regenerated, and the restarted server serves it.
    const docsPath = join(copy, 'openapi', 'paths', 'docs.yaml');
    const docsYaml = readFileSync(docsPath, 'utf8');
    writeFileSync(docsPath, docsYaml.replace('summary: API reference', 'summary: API reference, edited'));
    await until('regenerate', () => /\[dev\] regenerated in [\d.]+ s/.test(output));
    await until('restart', () => count(listening) === 2);
    const spec = (await (await fetch(`${url()}/openapi.json`)).json()) as {
      paths: Record<string, { get?: { summary?: string } }>;
    };
    expect(spec.paths['/docs']?.get?.summary).toBe('API reference, edited');

    // A contract that does not parse: one line, the server still up on the last good one.
    writeFileSync(docsPath, `${docsYaml}\n  : [unclosed\n`);
    await until('generate failure', () => /\[dev\] generate failed/.test(output));
    const failure = output.split('\n').find((line) => line.includes('[dev] generate failed'))!;
    expect(failure).toContain('the server keeps the last good contract');
    expect((await fetch(`${url()}/health/live`)).status).toBe(200);

    // A contract change that breaks a handler: a type error naming it, seconds later.
    writeFileSync(docsPath, docsYaml.replace('operationId: getDocs', 'operationId: getReferenceDocs'));
    await until('type error', () => /src\/http\/operations-endpoints\.ts\(\d+,\d+\): error TS\d+/.test(output));

    // Ctrl-C: everything stops, nothing is left running.
    process.kill(dev.pid!, 'SIGINT');
    expect(await exited).toBe(0);
    expect(output).toContain('[dev] stopped');
    expect(processesInCopy()).toEqual([]);
  }, 300_000);
});

// Keep jest from treating a missing /proc (not Linux) as a pass with nothing checked.
if (!existsSync('/proc/self/cwd')) throw new Error('this test reads /proc: Linux only');
