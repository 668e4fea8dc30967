#!/usr/bin/env node
// The web example's development server: bundles app.ts with esbuild, then serves the page on its
// own origin (not the API's), so the browser really goes through CORS.
//
//   npm run example:web                                  # http://localhost:5173, API at http://localhost:3000
//   npm run example:web -- --port 8080 --api http://localhost:3001
//   npm run example:web -- --build-only                  # just write examples/web/dist/
//
// Options: --port (default 5173, 0: any free one), --host (default localhost), --api (the API's
// origin baked into the bundle; API_URL does the same; default http://localhost:3000),
// --outdir (default examples/web/dist), --build-only. The page also takes ?api=<origin> at run time.
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '5173' },
    host: { type: 'string', default: 'localhost' },
    api: { type: 'string', default: process.env.API_URL || 'http://localhost:3000' },
    outdir: { type: 'string', default: join(here, 'dist') },
    'build-only': { type: 'boolean', default: false },
  },
});

const api = new URL(values.api);
if (api.protocol !== 'http:' && api.protocol !== 'https:')
  throw new Error(`--api must be an http(s) origin, not ${values.api}`);
const outdir = resolve(values.outdir);

/** Bundles the page into `outdir`: app.js (+ source map), index.html and style.css as they are. */
async function buildPage() {
  await mkdir(outdir, { recursive: true });
  await build({
    entryPoints: [join(here, 'app.ts')],
    outfile: join(outdir, 'app.js'),
    bundle: true,
    format: 'esm',
    // The browsers @tasks-api/client supports (its package.json's browserslist).
    target: ['chrome92', 'edge92', 'firefox95', 'safari15.4'],
    sourcemap: true,
    minify: true,
    legalComments: 'none',
    // The client from this repository's source: no build of the package needed first. A project
    // of its own would `npm install @tasks-api/client` and import it the same way.
    alias: { '@tasks-api/client': join(here, '../../packages/client/src/index.ts') },
    define: { __TASKS_API_URL__: JSON.stringify(api.origin) },
    logLevel: 'warning',
  });
  await Promise.all(['index.html', 'style.css'].map((file) => copyFile(join(here, file), join(outdir, file))));
}

const TYPES = {
  '/index.html': 'text/html; charset=utf-8',
  '/app.js': 'text/javascript; charset=utf-8',
  '/app.js.map': 'application/json; charset=utf-8',
  '/style.css': 'text/css; charset=utf-8',
};

/**
 * The page may load only its own files and talk only to the API (the configured origin, or any
 * loopback port for ?api=): the browser itself refuses any other request.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  `connect-src ${api.origin} http://localhost:* http://127.0.0.1:*`,
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Serves `outdir`'s four files, nothing else (no directory listing, no path from the URL touches the disk). */
function servePage() {
  return createServer(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const file = path === '/' ? '/index.html' : path;
    const type = TYPES[file];
    if ((req.method !== 'GET' && req.method !== 'HEAD') || type === undefined) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Not found\n');
      return;
    }
    try {
      const body = await readFile(join(outdir, file));
      res.writeHead(200, {
        'Content-Type': type,
        'Content-Length': body.length,
        'Cache-Control': 'no-store',
        'Content-Security-Policy': CSP,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Not built\n');
    }
  });
}

await buildPage();
if (values['build-only']) {
  console.log(`Built ${outdir} (API: ${api.origin})`);
} else {
  const server = servePage();
  await new Promise((resolveListen, reject) =>
    server.once('error', reject).listen(Number(values.port), values.host, resolveListen),
  );
  const { port } = server.address();
  const host = values.host.includes(':') ? `[${values.host}]` : values.host;
  const origin = `http://${host}:${port}`;
  console.log(
    [
      `tasks-api web example: ${origin}/`,
      `It calls the API at ${api.origin} (open ${origin}/?api=<origin> for another one).`,
      `Start the API with this page's origin allowed, in another terminal:`,
      `  CORS_ORIGINS=${origin} npm start`,
    ].join('\n'),
  );
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.once('SIGINT', stop).once('SIGTERM', stop);
}
