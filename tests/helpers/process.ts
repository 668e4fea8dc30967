import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, waitUntilServing } from '../../scripts/server-process.js';

/**
 * The real entry point (src/main.ts) as its own process, as a process manager would run it.
 * `output`: stdout and stderr as they came; `stdout`: stdout alone (the log lines).
 */
export async function startMain(env: Record<string, string>): Promise<{
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  output: () => string;
  stdout: () => string;
}> {
  const port = await freePort();
  let output = '';
  let stdout = '';
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    // No shedding for event-loop delay (see startServer): these tests are about other things.
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      NODE_ENV: 'production',
      LOG_FORMAT: 'json',
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '600000',
      PORT: String(port),
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
  const url = `http://127.0.0.1:${port}`;
  // A PGlite start (WebAssembly PostgreSQL, seven migrations) took over 20 s on a loaded two-core
  // machine; a server that did not start is stopped, or jest would wait on it for ever.
  await waitUntilServing(`${url}/health/ready`, child, {
    timeoutMs: 45_000,
    failure: () => `the server did not start:\n${output}`,
  }).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });
  return { child, url, exited, output: () => output, stdout: () => stdout };
}
