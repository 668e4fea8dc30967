#!/usr/bin/env node
// `npm run mock`: the bundled contract (generated/openapi.json) served by Stoplight Prism as a mock
// server, for frontend work before (or beside) the real server. docs/mock.md is the user's page.
// - Responses are the contract's examples (static mode: the same answer every time); a request is
//   validated against the contract first, and an off-spec one gets the contract's 422 (or 401,
//   415) with the real violations in the `sl-violations` header (Prism's --errors).
// - MOCK_PORT (default 4010; 0 picks a free one), MOCK_HOST (default 127.0.0.1). Arguments after
//   `--` go to `prism mock` as they are (e.g. `npm run mock -- -v warn`).
// - CORS: Prism answers preflights itself and allows every origin. The contract documents the real
//   server's `Access-Control-Allow-Origin` response header, with https://app.example.com as its
//   example, and Prism would send that example on 2xx responses, over its own header: a browser on
//   any other origin would be refused. So Prism serves a copy of the bundle without the
//   `Access-Control-*` response headers (a temporary file, removed on exit); nothing else differs.
// - generated/openapi.json is bundled first if it is missing. When it changes (`npm run generate`,
//   `npm run dev`), the copy is rewritten and Prism reloads it on the same port; not with
//   MOCK_PORT=0, where a reload would pick another port.
// Ctrl-C (SIGINT) or SIGTERM stops Prism and removes the copy.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'generated', 'openapi.json');
const prism = join(root, 'node_modules', '.bin', 'prism');
const RELOAD_DEBOUNCE_MS = 300;

const say = (message) => process.stdout.write(`[mock] ${message}\n`);
const fail = (message) => {
  process.stderr.write(`npm run mock: ${message}\n`);
  process.exit(1);
};

const host = process.env.MOCK_HOST || '127.0.0.1';
const portText = process.env.MOCK_PORT || '4010';
const port = Number(portText);
if (!/^\d+$/.test(portText) || port > 65535)
  fail(`MOCK_PORT must be a port number from 0 to 65535 (0 picks a free one), not "${portText}"`);
if (!existsSync(prism)) fail('Prism is not installed (node_modules/.bin/prism): run npm ci first');

if (!existsSync(bundle)) {
  say('generated/openapi.json is missing: bundling the contract (node scripts/generate.mjs bundle)');
  const built = spawnSync(process.execPath, [join(root, 'scripts', 'generate.mjs'), 'bundle'], {
    cwd: root,
    stdio: 'inherit',
  });
  if (built.status !== 0) fail('bundling the contract failed (output above); fix openapi/ and run it again');
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
/** The bundle as the mock serves it: every response without its documented `Access-Control-*` headers. */
function servedCopy(text) {
  const doc = JSON.parse(text);
  const strip = (response) => {
    for (const name of Object.keys(response?.headers ?? {}))
      if (/^access-control-/i.test(name)) delete response.headers[name];
  };
  for (const item of [...Object.values(doc.paths ?? {}), ...Object.values(doc.webhooks ?? {})])
    for (const method of METHODS)
      for (const response of Object.values(item?.[method]?.responses ?? {})) strip(response);
  for (const response of Object.values(doc.components?.responses ?? {})) strip(response);
  return { json: JSON.stringify(doc), version: doc.info?.version ?? '?' };
}

let served;
try {
  served = servedCopy(readFileSync(bundle, 'utf8'));
} catch (error) {
  fail(`generated/openapi.json is not a readable JSON document (${error.message}); run npm run generate`);
}
const work = mkdtempSync(join(tmpdir(), 'tasks-api-mock-'));
const copy = join(work, 'openapi.json');
writeFileSync(copy, served.json);
const cleanUp = () => rmSync(work, { recursive: true, force: true });

// Prism reports a port in use as an empty "fatal" line and its --help: say it in one line instead.
if (port !== 0) {
  const problem = await new Promise((resolve) => {
    const probe = createServer()
      .once('error', (error) => resolve(error))
      .listen(port, host, () => probe.close(() => resolve(undefined)));
  });
  if (problem) {
    cleanUp();
    fail(
      problem.code === 'EADDRINUSE'
        ? `cannot listen on ${host}:${port}: it is already in use (an earlier npm run mock still going?). Stop that process, or set MOCK_PORT to a free port (MOCK_PORT=0 picks one).`
        : problem.code === 'EACCES'
          ? `cannot listen on ${host}:${port}: permission denied (ports below 1024 need privileges). Set MOCK_PORT to a port above 1023.`
          : `cannot listen on ${host}:${port}: ${problem.message}`,
    );
  }
}

const child = spawn(
  prism,
  ['mock', '--host', host, '--port', String(port), '--errors', ...process.argv.slice(2), copy],
  {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...(process.stdout.isTTY && !process.env.NO_COLOR ? { FORCE_COLOR: '1' } : {}) },
  },
);

// Prism's output, less its list of every operation at each start; its "listening" line becomes ours.
// Until it listens, everything is kept, to be shown if it stops first.
let url;
let early = '';
const ROUTE = /\[CLI\].*\binfo\b\s+(GET|PUT|POST|DELETE|OPTIONS|HEAD|PATCH|TRACE)\s+https?:\/\//;
// eslint-disable-next-line no-control-regex -- Prism's colours, when it writes to a terminal
const plain = (line) => line.replace(/\u001b\[[0-9;]*m/g, '');
createInterface({ input: child.stdout }).on('line', (line) => {
  const listening = /Prism is listening on (\S+)/.exec(plain(line));
  if (listening) {
    const reloaded = url !== undefined;
    url = listening[1];
    if (reloaded) say(`reloaded: tasks-api contract ${served.version}, still on ${url}`);
    else {
      say(
        `tasks-api ${served.version} mock listening on ${url} (generated/openapi.json: its examples as responses, requests validated)`,
      );
      say(
        `any "Authorization: Bearer <anything>" passes; pick a response with "Prefer: code=404"; docs/mock.md; Ctrl-C stops it`,
      );
    }
    return;
  }
  if (url === undefined) early += `${line}\n`;
  if (!ROUTE.test(plain(line)) && url !== undefined) process.stdout.write(`${line}\n`);
});
child.stderr.on('data', (chunk) => {
  if (url === undefined) early += chunk;
  else process.stderr.write(chunk);
});

let stopping = false;
child.once('exit', (code, signal) => {
  cleanUp();
  if (stopping) process.exit(0);
  if (url === undefined) {
    process.stderr.write(early);
    fail(`Prism stopped before it listened (${signal ?? `exit ${code}`}); its output is above`);
  }
  fail(`Prism stopped (${signal ?? `exit ${code}`})`);
});
for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(name, () => {
    stopping = true;
    child.kill('SIGTERM');
  });
}

// Follow the contract: a new bundle is a new copy, which Prism reloads (same port).
if (port !== 0) {
  let timer;
  watch(dirname(bundle), (_event, file) => {
    if (file !== 'openapi.json') return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      try {
        const next = servedCopy(readFileSync(bundle, 'utf8'));
        if (next.json === served.json) return;
        served = next;
        writeFileSync(copy, served.json);
        say(`generated/openapi.json changed (contract ${served.version}): reloading`);
      } catch {
        // Written halfway (the next event brings the rest) or gone: the last good copy stays.
      }
    }, RELOAD_DEBOUNCE_MS);
  }).unref();
}
