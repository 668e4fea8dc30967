#!/usr/bin/env node
/**
 * The static check of the deployment files, run by CI: no container daemon runs on the project's
 * machines, so the Dockerfile and compose.yaml are never built there, and this is what keeps them
 * honest instead (docs/deploy.md).
 *
 *   node scripts/check-deploy.mjs [DIR]     checks DIR (default: this checkout), e.g. a copy with a change
 *
 * - Every command in the Dockerfile (RUN, CMD, ENTRYPOINT, HEALTHCHECK) and in compose.yaml
 *   (command, entrypoint, healthcheck test) is one of ALLOWED below, each with the reason it may
 *   be there: a command CI itself runs, or a known command of the image it runs in.
 * - Every file COPY'd from the context exists and is not excluded by .dockerignore; every file
 *   the server reads by path at run time (src/http/contract.ts) is in the final stage.
 * - Every FROM is the official Node 24 slim image (or an earlier stage), the final stage runs as
 *   a non-root USER with NODE_ENV=production, EXPOSEs the port the server listens on, and has a
 *   HEALTHCHECK of /health/ready (or compose gives the API one).
 * - Every npm script named exists in package.json; every `node dist/src/X.js` has its src/X.ts.
 * - compose.yaml: an API, a worker, PostgreSQL 16 or 17 (with a volume and a healthcheck) and
 *   Redis; every variable set on the app's services is one src/config.ts reads; secrets only as
 *   ${VAR:?message}, never written in the file; and each app service's environment, as the
 *   image and compose give it, passes src/config.ts's own loadConfig as a production
 *   configuration (through tsx, so the rules cannot drift from the code).
 *
 * Prints one line per problem and exits 1, or one line saying what it checked.
 *
 * For scripts/check-deploy-runtime.sh, which runs the image's stages without Docker:
 *   node scripts/check-deploy.mjs --emit-stage NAME     the stage's steps as shell lines
 *   node scripts/check-deploy.mjs --emit-service NAME   a compose service's command and environment
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import yaml from 'js-yaml';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const emitStage = optionValue('--emit-stage');
const emitService = optionValue('--emit-service');
const root = resolve(args.find((a) => !a.startsWith('--')) ?? join(here, '..'));

function optionValue(name) {
  const i = args.indexOf(name);
  if (i === -1) return undefined;
  const [value] = args.splice(i, 2).slice(1);
  if (!value) fail(`${name} needs a name`);
  return value;
}

function fail(message) {
  process.stderr.write(`check-deploy: ${message}\n`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------
// What may run. `argv` is matched word for word (after the shell's quote removal); `in` is the
// image the command runs in: `app` (this Dockerfile's), or the official postgres or redis image.
// `outside` tells scripts/check-deploy-runtime.sh how to reproduce it without Docker: `run` as
// is, or `skip` with why.
// ---------------------------------------------------------------------------------------------
const HEALTHCHECK_SCRIPT =
  "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))";

/**
 * The V8 settings `npm start` gives node (its words before --env-file-if-exists and --import;
 * docs/performance.md#memory): the image's commands must give the same ones, and npm run worker too.
 */
const V8_FLAGS = v8FlagsOf(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts?.start ?? '');

function v8FlagsOf(command) {
  const words = command.split(/\s+/);
  const flags = [];
  for (let i = words.indexOf('node') + 1; i > 0 && i < words.length && words[i].startsWith('--'); i += 1) {
    if (words[i] === '--import') i += 1;
    else if (!words[i].startsWith('--env-file')) flags.push(words[i]);
  }
  return flags;
}

const ALLOWED = [
  {
    argv: ['npm', 'ci', '--no-audit', '--no-fund'],
    in: 'app',
    outside: 'run',
    reason: "CI's first step (.ci/run: install), in the build stage: TypeScript is a devDependency",
  },
  {
    argv: ['npm', 'run', 'build'],
    in: 'app',
    outside: 'run',
    reason: 'the build (tsc -b tsconfig.build.json): CI runs it before every server start (npm start, the benches)',
  },
  {
    argv: ['npm', 'ci', '--omit=dev', '--no-audit', '--no-fund'],
    in: 'app',
    outside: 'run',
    reason: "the production install; CI runs it in scripts/check-deploy-runtime.sh's copy of the runtime stage",
  },
  {
    argv: ['npm', 'cache', 'clean', '--force'],
    in: 'app',
    outside: 'skip: it only makes the layer smaller, and here it would empty the machine-wide npm cache',
    reason: "npm's own housekeeping: the runtime image does not keep the downloaded tarballs",
  },
  {
    argv: ['mkdir', '.data'],
    in: 'app',
    outside: 'run',
    reason: 'coreutils: the folder of embedded PGlite (a run without DATABASE_URL), the one the node user may write',
  },
  {
    argv: ['chown', 'node:node', '.data'],
    in: 'app',
    outside: 'run',
    reason:
      "coreutils; the image's node user owns .data and nothing else (the runtime check uses its own unprivileged user)",
  },
  {
    argv: ['node', ...V8_FLAGS, '--import', './dist/src/telemetry/preload.js', 'dist/src/main.js'],
    in: 'app',
    outside: 'run',
    reason: "the API: what npm start runs (CI's smoke test, contract and bench steps) and the runtime check starts",
  },
  {
    argv: ['node', ...V8_FLAGS, '--import', './dist/src/telemetry/preload.js', 'dist/src/worker.js'],
    in: 'app',
    outside: 'run',
    reason: 'the webhook worker: what npm run worker runs, started by the runtime check beside the API',
  },
  {
    argv: ['node', '-e', HEALTHCHECK_SCRIPT],
    in: 'app',
    outside: 'run',
    reason:
      "the healthcheck: the request CI's wait_ready makes with curl (scripts/lib.sh), with Node's fetch since the slim image has no curl",
  },
  {
    argv: ['pg_isready', '-U', 'tasks', '-d', 'tasks'],
    in: 'postgres',
    outside: 'skip: it runs inside the postgres image',
    reason: "PostgreSQL's own readiness probe, shipped in the postgres image; CI runs pg_isready too (.ci/run)",
  },
  {
    argv: ['redis-cli', 'ping'],
    in: 'redis',
    outside: 'skip: it runs inside the redis image',
    reason: "Redis's own client, shipped in the redis image: PONG while the server answers",
  },
  {
    argv: ['redis-server', '--save', '', '--appendonly', 'no'],
    in: 'redis',
    outside: 'skip: it runs inside the redis image',
    reason:
      "the redis image's server without persistence (rate-limit counters only), as this machine's Redis is started",
  },
];

/** Variables the app's services may set that src/config.ts does not read: read by a library, with why. */
const EXTERNAL_VARIABLES = {
  AWS_ACCESS_KEY_ID: "the S3 SDK's credentials (ATTACHMENT_STORAGE=s3)",
  AWS_SECRET_ACCESS_KEY: "the S3 SDK's credentials (ATTACHMENT_STORAGE=s3)",
  AWS_SESSION_TOKEN: "the S3 SDK's credentials (ATTACHMENT_STORAGE=s3)",
};

/** A variable whose value is a secret: it may only come from the environment, as ${VAR:?message}. */
const SECRET_NAME = /SECRET|TOKEN|PASSWORD|PRIVATE_KEY/;

const NODE_IMAGE = /^node:24-(?:[a-z]+-)?slim(?:@sha256:[0-9a-f]{64})?$/;
const POSTGRES_IMAGE = /^postgres:1[67](?:[.-][a-z0-9.-]+)?(?:@sha256:[0-9a-f]{64})?$/;
const REDIS_IMAGE = /^(?:redis|valkey\/valkey):\d+(?:[.-][a-z0-9.-]+)?(?:@sha256:[0-9a-f]{64})?$/;
const READY_PATH = '/health/ready';

const problems = [];
const problem = (where, message) => problems.push(`${where}: ${message}`);

// ---------------------------------------------------------------------------------------------
// The repository facts the deployment files are checked against.
// ---------------------------------------------------------------------------------------------
function readText(rel) {
  const file = join(root, rel);
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

const packageJson = JSON.parse(readText('package.json') ?? '{}');
const scripts = packageJson.scripts ?? {};
if (v8FlagsOf(scripts.worker ?? '').join(' ') !== V8_FLAGS.join(' '))
  problem('package.json', `npm run worker must give node the V8 settings npm start gives it: ${V8_FLAGS.join(' ')}`);
const configSource = readText('src/config.ts') ?? '';
/** Every variable loadConfig reads: the first argument of its readers. */
const configVariables = new Set(
  [...configSource.matchAll(/\b(?:read|int|oneOf|url|secretOf|list)\(\s*'([A-Z][A-Z0-9_]*)'/g)].map((m) => m[1]),
);
const defaultPort = Number(/\bint\('PORT',\s*(\d+)/.exec(configSource)?.[1] ?? NaN);
/** The files src/http/contract.ts reads from generated/ at start. */
const runtimeFiles = [...(readText('src/http/contract.ts') ?? '').matchAll(/join\(generated,\s*'([^']+)'\)/g)].map(
  (m) => `generated/${m[1]}`,
);
const contractPaths = Object.keys(JSON.parse(readText('generated/openapi.json') ?? '{"paths":{}}').paths ?? {});

// ---------------------------------------------------------------------------------------------
// A small shell lexer: words with quotes removed, and the operators between them. RUN lines and
// CMD-SHELL strings may only chain simple commands with &&; anything else (pipes, redirections,
// substitutions, variables) is refused, so that every command can be read and matched here.
// ---------------------------------------------------------------------------------------------
function shellCommands(text, where) {
  const commands = [[]];
  let word = null;
  const end = () => {
    if (word !== null) commands.at(-1).push(word);
    word = null;
  };
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close === -1) return (problem(where, 'unterminated single quote'), []);
      word = (word ?? '') + text.slice(i + 1, close);
      i = close;
    } else if (c === '"') {
      let j = i + 1;
      let value = '';
      for (; j < text.length && text[j] !== '"'; j += 1) {
        if (text[j] === '\\' && '"\\$`'.includes(text[j + 1])) value += text[++j];
        else if (text[j] === '$' || text[j] === '`')
          return (problem(where, `no substitutions in commands: ${text}`), []);
        else value += text[j];
      }
      if (j >= text.length) return (problem(where, 'unterminated double quote'), []);
      word = (word ?? '') + value;
      i = j;
    } else if (c === '\\') {
      word = (word ?? '') + (text[i + 1] ?? '');
      i += 1;
    } else if (/\s/.test(c)) {
      end();
    } else if (c === '&' && text[i + 1] === '&') {
      end();
      commands.push([]);
      i += 1;
    } else if ('|;<>&$`(){}'.includes(c)) {
      return (problem(where, `only simple commands joined by && (found "${c}" in: ${text})`), []);
    } else {
      word = (word ?? '') + c;
    }
  }
  end();
  if (commands.some((argv) => argv.length === 0)) return (problem(where, `empty command in: ${text}`), []);
  return commands;
}

function allowedEntry(argv) {
  return ALLOWED.find((e) => e.argv.length === argv.length && e.argv.every((w, i) => w === argv[i]));
}

const shown = (argv) => argv.map((w) => (/^[\w./:=@%+-]+$/.test(w) ? w : `'${w}'`)).join(' ');

/** Checks one command: on the allow-list for that image, npm scripts exist, node's file has a source. */
function checkCommand(argv, image, where) {
  const entry = allowedEntry(argv);
  if (!entry) {
    problem(where, `not a command CI runs or one on the allow-list of scripts/check-deploy.mjs: ${shown(argv)}`);
  } else if (entry.in !== image) {
    problem(where, `${shown(argv)} belongs in the ${entry.in} image, not the ${image} one`);
  }
  if (argv[0] === 'npm' && (argv[1] === 'run' || argv[1] === 'run-script')) {
    const name = argv.slice(2).find((w) => !w.startsWith('-'));
    if (name && !(name in scripts)) problem(where, `npm script "${name}" is not in package.json`);
  }
  if (argv[0] === 'npm' && ['start', 'test'].includes(argv[1]) && !(argv[1] in scripts)) {
    problem(where, `npm script "${argv[1]}" is not in package.json`);
  }
  if (argv[0] === 'node' && argv[1]?.endsWith('.js') && argv[1].startsWith('dist/')) {
    const source = argv[1].replace(/^dist\//, '').replace(/\.js$/, '.ts');
    if (!existsSync(join(root, source))) problem(where, `${argv[1]} is built from ${source}, which does not exist`);
  }
  return entry;
}

// ---------------------------------------------------------------------------------------------
// .dockerignore: Docker's patterns (**, *, ?, ! exceptions; the last match wins; a folder's
// exclusion covers what is inside it).
// ---------------------------------------------------------------------------------------------
const ignorePatterns = (readText('.dockerignore') ?? '')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'))
  .map((l) => {
    const negated = l.startsWith('!');
    const pattern = posix.normalize((negated ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/+$/, '');
    const source = pattern
      .split('/')
      .map((part) =>
        part === '**'
          ? '.*'
          : part
              .replace(/[.+^${}()|[\]\\]/g, '\\$&')
              .replace(/\*/g, '[^/]*')
              .replace(/\?/g, '[^/]'),
      )
      .join('/')
      .replace(/\.\*\//g, '(?:.*/)?');
    return { negated, regex: new RegExp(`^${source}(?:/.*)?$`) };
  });

function ignored(rel) {
  let excluded = false;
  for (const { negated, regex } of ignorePatterns) if (regex.test(rel)) excluded = !negated;
  return excluded;
}

function filesUnder(rel) {
  const full = join(root, rel);
  if (!statSync(full).isDirectory()) return [rel];
  return readdirSync(full).flatMap((name) => (name === 'node_modules' ? [] : filesUnder(posix.join(rel, name))));
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile: instructions (continuations joined, comments dropped) grouped into stages.
// ---------------------------------------------------------------------------------------------
function parseDockerfile(text) {
  const instructions = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    if (/^\s*(#|$)/.test(lines[i])) continue;
    const line = i + 1;
    let body = lines[i];
    while (/\\\s*$/.test(body) && i + 1 < lines.length) {
      body = body.replace(/\\\s*$/, ' ');
      i += 1;
      if (!/^\s*#/.test(lines[i])) body += lines[i].trim();
    }
    const [, keyword, rest] = /^\s*(\S+)\s*(.*)$/.exec(body);
    instructions.push({ line, keyword: keyword.toUpperCase(), rest: rest.trim() });
  }
  const stages = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const words = ins.rest.split(/\s+/).filter((w) => !w.startsWith('--'));
      stages.push({ image: words[0], name: words[2]?.toLowerCase(), line: ins.line, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== 'ARG') problem(`Dockerfile:${ins.line}`, `${ins.keyword} before the first FROM`);
    } else {
      stages.at(-1).instructions.push(ins);
    }
  }
  return stages;
}

/** `--flag=value` options in front of an instruction's arguments, and what follows them. */
function options(rest) {
  const flags = {};
  let remaining = rest;
  for (let m; (m = /^--([a-z-]+)(?:=(\S+))?\s*/.exec(remaining)); remaining = remaining.slice(m[0].length))
    flags[m[1]] = m[2] ?? true;
  return { flags, remaining };
}

/** CMD/ENTRYPOINT/HEALTHCHECK CMD arguments: exec form (a JSON array) or shell form. */
function commandsOf(text, where) {
  if (text.startsWith('[')) {
    try {
      const argv = JSON.parse(text);
      if (Array.isArray(argv) && argv.every((w) => typeof w === 'string') && argv.length > 0) return [argv];
    } catch {
      // reported below
    }
    problem(where, `not a JSON array of strings: ${text}`);
    return [];
  }
  return shellCommands(text, where);
}

function envPairs(rest) {
  // ENV a=b c="d e" (or the old ENV a b).
  if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(rest)) {
    const [, key, value] = /^(\S+)\s+(.*)$/.exec(rest) ?? [];
    return key ? [[key, value]] : [];
  }
  return shellCommands(rest, 'ENV')
    .flat()
    .map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]);
}

function analyseDockerfile() {
  const text = readText('Dockerfile');
  if (text === undefined) {
    problem('Dockerfile', 'missing');
    return undefined;
  }
  const stages = parseDockerfile(text);
  if (stages.length < 2) problem('Dockerfile', 'not multi-stage: build in one stage, run from another');
  const names = new Set();
  for (const stage of stages) {
    const where = `Dockerfile:${stage.line}`;
    if (!names.has(stage.image?.toLowerCase()) && !NODE_IMAGE.test(stage.image ?? ''))
      problem(where, `FROM ${stage.image}: the base must be the official Node 24 slim image (node:24-<variant>-slim)`);
    if (stage.name) names.add(stage.name);
    stage.env = {};
    stage.files = new Set();
    let lockCopied = false;
    for (const ins of stage.instructions) {
      const at = `Dockerfile:${ins.line}`;
      switch (ins.keyword) {
        case 'RUN':
          for (const argv of shellCommands(ins.rest, at)) {
            checkCommand(argv, 'app', at);
            if (argv[0] === 'npm' && argv[1] === 'ci' && !lockCopied)
              problem(at, 'npm ci before package-lock.json is copied in this stage');
          }
          break;
        case 'CMD':
        case 'ENTRYPOINT':
          for (const argv of commandsOf(ins.rest, at)) checkCommand(argv, 'app', at);
          stage[ins.keyword.toLowerCase()] = { ...ins, argv: commandsOf(ins.rest, at)[0] };
          break;
        case 'HEALTHCHECK': {
          const { remaining } = options(ins.rest);
          if (/^NONE\b/i.test(remaining)) break;
          const cmd = /^CMD\s+(.*)$/i.exec(remaining);
          if (!cmd) {
            problem(at, 'HEALTHCHECK without CMD');
            break;
          }
          const argvs = commandsOf(cmd[1], at);
          for (const argv of argvs) checkCommand(argv, 'app', at);
          stage.healthcheck = { ...ins, argv: argvs[0] };
          break;
        }
        case 'COPY':
        case 'ADD': {
          if (ins.keyword === 'ADD') problem(at, 'ADD fetches and unpacks; use COPY');
          const { flags, remaining } = options(ins.rest);
          const words = remaining.startsWith('[') ? JSON.parse(remaining) : remaining.split(/\s+/);
          const dest = words.at(-1);
          const sources = words.slice(0, -1);
          ins.copy = { from: flags.from, sources, dest };
          if (flags.from !== undefined) {
            if (!names.has(String(flags.from).toLowerCase()))
              problem(at, `COPY --from=${flags.from}: no earlier stage of that name`);
            for (const s of sources) stage.files.add(posix.join(dest, posix.basename(s)));
            break;
          }
          for (const source of sources) {
            const rel = posix.normalize(source).replace(/^\.\/|\/$/g, '');
            if (/[*?[]/.test(rel)) {
              problem(at, `COPY ${source}: name the files, no wildcards (this check cannot follow them)`);
              continue;
            }
            if (!existsSync(join(root, rel))) {
              problem(at, `COPY ${source}: not in the repository`);
              continue;
            }
            if (ignored(rel)) problem(at, `COPY ${source}: excluded by .dockerignore`);
            const inside = filesUnder(rel).filter(ignored);
            if (inside.length > 0 && !ignored(rel))
              problem(at, `COPY ${source}: .dockerignore excludes ${inside.slice(0, 3).join(', ')}`);
            if (rel === 'package-lock.json') lockCopied = true;
            const isDir = statSync(join(root, rel)).isDirectory();
            const target = dest.endsWith('/') || sources.length > 1 ? posix.join(dest, posix.basename(rel)) : dest;
            for (const file of filesUnder(rel))
              stage.files.add(isDir ? posix.join(target, relative(rel, file)) : target);
          }
          break;
        }
        case 'ENV':
          for (const [key, value] of envPairs(ins.rest)) stage.env[key] = value;
          break;
        case 'USER':
          stage.user = { ...ins, name: ins.rest.split(':')[0] };
          break;
        case 'EXPOSE':
          stage.expose = ins.rest.split(/\s+/).map((p) => Number(p.split('/')[0]));
          break;
        case 'WORKDIR':
        case 'ARG':
        case 'LABEL':
        case 'STOPSIGNAL':
          break;
        default:
          problem(at, `${ins.keyword}: not an instruction this check knows (extend scripts/check-deploy.mjs)`);
      }
    }
  }
  const final = stages.at(-1);
  if (!final) return undefined;
  const at = `Dockerfile:${final.line}`;
  if (!final.user) problem(at, 'the final stage has no USER: it would run as root');
  else if (['root', '0'].includes(final.user.name)) problem(`Dockerfile:${final.user.line}`, 'USER must not be root');
  if (final.env.NODE_ENV !== 'production') problem(at, 'the final stage does not set ENV NODE_ENV=production');
  if (!final.cmd) problem(at, 'the final stage has no CMD');
  if (!final.expose?.length) problem(at, 'the final stage EXPOSEs no port');
  else if (!final.expose.includes(defaultPort))
    problem(at, `EXPOSE ${final.expose.join(' ')}: the server listens on ${defaultPort} unless PORT says otherwise`);
  const finalFiles = [...final.files].map((f) => f.replace(/^\.\//, ''));
  for (const file of ['package.json', ...runtimeFiles])
    if (!finalFiles.includes(file))
      problem(at, `the final stage lacks ${file}, which the server reads by path at start (src/http/contract.ts)`);
  if (final.cmd?.argv && final.cmd.argv[0] === 'node' && !finalFiles.some((f) => f === 'dist' || f.startsWith('dist')))
    problem(at, 'the final stage runs node dist/… but copies no dist/ from the build stage');
  if (final.healthcheck && !final.healthcheck.argv?.some((w) => w.includes(READY_PATH)))
    problem(`Dockerfile:${final.healthcheck.line}`, `the HEALTHCHECK does not ask ${READY_PATH}`);
  return { stages, final };
}

// ---------------------------------------------------------------------------------------------
// compose.yaml
// ---------------------------------------------------------------------------------------------
/** Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, $$. */
function interpolate(value, lookup) {
  return String(value).replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (all, name, op, arg, bare) => (all === '$$' ? '$' : lookup(name ?? bare, op, arg)),
  );
}

function environmentOf(service) {
  const env = service.environment ?? {};
  if (Array.isArray(env))
    return Object.fromEntries(env.map((e) => [String(e).split('=')[0], String(e).split('=').slice(1).join('=')]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === null ? '' : String(v)]));
}

/** argv lists of a compose command, entrypoint or healthcheck test. */
function composeCommands(value, where, isTest) {
  if (value === undefined || value === null) return [];
  if (typeof value === 'string') return shellCommands(value, where);
  if (!Array.isArray(value)) return (problem(where, 'neither a string nor a list'), []);
  if (!isTest) return [value.map(String)];
  const [kind, ...rest] = value.map(String);
  if (kind === 'NONE') return [];
  if (kind === 'CMD') return [rest];
  if (kind === 'CMD-SHELL') return shellCommands(rest.join(' '), where);
  return (problem(where, `a healthcheck test starts with CMD, CMD-SHELL or NONE, not ${kind}`), []);
}

function analyseCompose(docker) {
  const text = readText('compose.yaml');
  if (text === undefined) {
    problem('compose.yaml', 'missing');
    return undefined;
  }
  let compose;
  try {
    compose = yaml.load(text);
  } catch (error) {
    problem('compose.yaml', `not YAML: ${error.message.split('\n')[0]}`);
    return undefined;
  }
  const services = compose?.services ?? {};
  const appImages = new Set(Object.values(services).flatMap((s) => (s?.build ? [s.image] : [])));
  const roles = { api: [], worker: [], postgres: [], redis: [] };
  const appServices = [];
  for (const [name, service] of Object.entries(services)) {
    const where = `compose.yaml: services.${name}`;
    const isApp = service.build !== undefined || (service.image !== undefined && appImages.has(service.image));
    const image = isApp
      ? 'app'
      : POSTGRES_IMAGE.test(service.image ?? '')
        ? 'postgres'
        : REDIS_IMAGE.test(service.image ?? '')
          ? 'redis'
          : undefined;
    if (!image) {
      problem(where, `image ${service.image}: not this Dockerfile's, PostgreSQL 16/17 or Redis pinned by major`);
      continue;
    }
    if (
      isApp &&
      service.build !== undefined &&
      ![undefined, '.', './'].includes(service.build?.context ?? service.build)
    )
      problem(where, 'build: the context is the repository root (.)');
    const commands = [];
    for (const key of ['entrypoint', 'command']) {
      for (const argv of composeCommands(service[key], `${where}.${key}`, false)) {
        checkCommand(argv, image, `${where}.${key}`);
        commands.push(argv);
      }
    }
    const test = service.healthcheck?.test;
    for (const argv of composeCommands(test, `${where}.healthcheck.test`, true))
      checkCommand(argv, image, `${where}.healthcheck.test`);
    const env = environmentOf(service);
    for (const [key, value] of Object.entries(env)) {
      const at = `${where}.environment.${key}`;
      if (isApp && !configVariables.has(key) && !(key in EXTERNAL_VARIABLES))
        problem(at, 'src/config.ts does not read this variable');
      if (SECRET_NAME.test(key) && !new RegExp(`^\\$\\{${key}:\\?[^}]+\\}$`).test(value))
        problem(at, `a secret: set it as \${${key}:?message} (from the environment), never in the file`);
      const credentials = /^[a-z][a-z0-9+.-]*:\/\/[^:/@]+:([^@]*)@/i.exec(value);
      if (credentials && !/^\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}$/.test(credentials[1]))
        problem(at, 'the password in this URL must come from the environment, as ${VAR:?message}');
    }
    if (image === 'postgres') {
      roles.postgres.push(name);
      if (!(service.volumes ?? []).some((v) => String(v.target ?? v).includes('/var/lib/postgresql')))
        problem(where, 'PostgreSQL without a volume for its data');
      if (!test) problem(where, 'PostgreSQL without a healthcheck (the app services wait for it)');
    } else if (image === 'redis') {
      roles.redis.push(name);
    } else {
      const argv = commands.at(-1) ?? docker?.final.cmd?.argv;
      const role = argv?.some((w) => /worker\.js$/.test(w)) ? 'worker' : 'api';
      roles[role].push(name);
      appServices.push({ name, role, env, service, where });
      if (role === 'api') {
        const disabled = service.healthcheck?.disable === true || (Array.isArray(test) && test[0] === 'NONE');
        const own = composeCommands(test, where, true).flat();
        if (disabled || (test === undefined && !docker?.final.healthcheck))
          problem(where, `the API needs a healthcheck of ${READY_PATH} (in the image or here)`);
        else if (test !== undefined && !own.some((w) => w.includes(READY_PATH)))
          problem(`${where}.healthcheck.test`, `does not ask ${READY_PATH}`);
      } else if (docker?.final.healthcheck && service.healthcheck?.disable !== true && test === undefined) {
        problem(where, `the worker serves no HTTP: the image's ${READY_PATH} check must be disabled for it`);
      }
    }
    for (const dependency of Object.keys(
      Array.isArray(service.depends_on)
        ? Object.fromEntries(service.depends_on.map((d) => [d]))
        : (service.depends_on ?? {}),
    ))
      if (!(dependency in services)) problem(`${where}.depends_on`, `no service ${dependency}`);
  }
  for (const [role, names] of Object.entries(roles))
    if (names.length === 0) problem('compose.yaml', `no ${role} service`);
  return { compose, appServices };
}

/** Each app service's environment (the image's ENV under compose's), resolved with stand-ins for the secrets. */
function resolvedEnvironment(docker, app) {
  const stand = (name, op, arg) => {
    if (op === ':?' || op === '?') return `stand-in-for-${name}-`.padEnd(48, 'x');
    if (op === ':-' || op === '-') return arg;
    return '';
  };
  const env = { ...(docker?.final.env ?? {}) };
  for (const [k, v] of Object.entries(app.env)) env[k] = interpolate(v, stand);
  return env;
}

async function checkProductionConfig(docker, composed) {
  let loadConfig;
  try {
    ({ loadConfig } = await import('tsx/esm/api').then(({ tsImport }) =>
      tsImport(pathToFileURL(join(root, 'src/config.ts')).href, import.meta.url),
    ));
  } catch (error) {
    problem('src/config.ts', `cannot be loaded through tsx to check the environments: ${error.message}`);
    return;
  }
  for (const app of composed.appServices) {
    const env = resolvedEnvironment(docker, app);
    try {
      const config = loadConfig(env);
      if (config.nodeEnv !== 'production') problem(app.where, 'NODE_ENV is not production (image ENV or here)');
      if (config.database.url === undefined)
        problem(app.where, 'no DATABASE_URL: PGlite lives inside one process and cannot be shared');
      if (
        app.role === 'api' &&
        config.webhooks.worker === 'off' &&
        !composed.appServices.some((a) => a.role === 'worker')
      )
        problem(app.where, 'WEBHOOK_WORKER=off but no worker service delivers');
      if (
        app.role === 'api' &&
        config.webhooks.worker === 'in-process' &&
        composed.appServices.some((a) => a.role === 'worker')
      )
        problem(app.where, 'a worker service runs, so the API should set WEBHOOK_WORKER=off');
    } catch (error) {
      for (const line of (error.problems ?? [error.message]).map(String)) problem(`${app.where}.environment`, line);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// For scripts/check-deploy-runtime.sh: shell lines it evaluates with its own functions.
// ---------------------------------------------------------------------------------------------
const q = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

function emitStageLines(docker, name) {
  const stage = docker?.stages.find((s) => s.name === name.toLowerCase());
  if (!stage) fail(`no stage named ${name} in the Dockerfile`);
  const out = [];
  for (const ins of stage.instructions) {
    if (ins.keyword === 'RUN') {
      for (const argv of shellCommands(ins.rest, ins.line)) {
        const entry = allowedEntry(argv);
        const skip = entry?.outside.startsWith('skip') ? entry.outside.slice(6) : undefined;
        out.push(skip ? `stage_skip ${q(skip)} ${argv.map(q).join(' ')}` : `stage_run ${argv.map(q).join(' ')}`);
      }
    } else if (ins.copy) {
      const { from, sources, dest } = ins.copy;
      out.push(
        from === undefined
          ? `stage_copy ${q(dest)} ${sources.map(q).join(' ')}`
          : `stage_copy_from ${q(from)} ${q(dest)} ${sources.map(q).join(' ')}`,
      );
    } else if (ins.keyword === 'ENV') {
      for (const [k, v] of envPairs(ins.rest)) out.push(`stage_env ${q(k)} ${q(v)}`);
    } else if (ins.keyword === 'WORKDIR') out.push(`stage_workdir ${q(ins.rest)}`);
    else if (ins.keyword === 'USER') out.push(`stage_user ${q(ins.rest)}`);
    else if (ins.keyword === 'EXPOSE') out.push(`stage_expose ${ins.rest.split(/\s+/).map(q).join(' ')}`);
  }
  if (stage.healthcheck) out.push(`stage_healthcheck ${stage.healthcheck.argv.map(q).join(' ')}`);
  if (stage.cmd) out.push(`stage_cmd ${stage.cmd.argv.map(q).join(' ')}`);
  return out;
}

function emitServiceLines(docker, composed, name) {
  const app = composed?.appServices.find((a) => a.name === name);
  if (!app) fail(`no app service named ${name} in compose.yaml`);
  const lookup = (variable, op, arg) => {
    const value = process.env[variable];
    if ((op === ':?' || op === '?') && !value) fail(`${variable} is not set (compose.yaml needs it: ${arg})`);
    if ((op === ':-' && !value) || (op === '-' && value === undefined)) return arg;
    return value ?? '';
  };
  const out = Object.entries(app.env).map(([k, v]) => `service_env ${q(k)} ${q(interpolate(v, lookup))}`);
  const argv = composeCommands(app.service.command, name, false)[0] ?? docker?.final.cmd?.argv ?? [];
  out.push(`service_command ${argv.map(q).join(' ')}`);
  return out;
}

if (!contractPaths.includes(READY_PATH)) problem('generated/openapi.json', `the contract has no ${READY_PATH}`);
const docker = analyseDockerfile();
const composed = analyseCompose(docker);
if (emitStage) {
  process.stdout.write(`${emitStageLines(docker, emitStage).join('\n')}\n`);
} else if (emitService) {
  process.stdout.write(`${emitServiceLines(docker, composed, emitService).join('\n')}\n`);
} else {
  if (composed) await checkProductionConfig(docker, composed);
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`check-deploy: ${p}\n`);
    process.exit(1);
  }
  const checked = root === resolve(here, '..') ? '' : ` in ${root}`;
  process.stdout.write(
    `check-deploy: ok${checked}: the Dockerfile (${docker.stages.length} stages) and compose.yaml (${Object.keys(composed.compose.services).length} services): every command on the allow-list (${ALLOWED.length} entries), every COPY present, production configuration valid for ${composed.appServices.map((a) => a.name).join(' and ')}\n`,
  );
}
