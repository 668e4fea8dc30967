// Mints a development bearer token the server from this checkout accepts:
//   npm run --silent token -- --sub alice [--scope "tasks:read"] [--ttl 1h] [--email a@b.c] [--name Alice]
// (`npm run token -- --help` for the options; a token lives 1 hour unless --ttl says otherwise).
// It signs HS256 with JWT_SECRET (from the environment or .env), or with the generated development
// secret under .data/. With NODE_ENV=production it refuses unless --force is given: a token minted
// from the production secret on a shell is a credential nobody issued.
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';
import { withDevSecret } from '../src/auth/dev-secret.js';
import { ConfigError, loadConfig } from '../src/config.js';

function fail(message: string): never {
  process.stderr.write(`token: ${message}\n`);
  process.exit(1);
}

// .env in the working directory, when there is one, as `node --env-file-if-exists=.env` loads it
// (a variable already in the environment wins), and nothing said when there is none. Loaded here
// rather than by that flag on tsx: tsx hands it to the node it starts, and Node 20 also acts on it
// in tsx's own process, so each printed ".env not found. Continuing without it.".
try {
  process.loadEnvFile('.env');
} catch (error) {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') fail(`cannot read .env: ${String(error)}`);
}

/** `3600`, `90s`, `15m`, `12h` or `7d` → seconds. */
function ttlSeconds(raw: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(raw);
  if (!match) fail(`--ttl must look like 3600, 90s, 15m, 12h or 7d (got "${raw}")`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

const USAGE = `Usage: npm run --silent token -- --sub <user> [options]

Mints a development bearer token (HS256) that the server from this checkout accepts, signed with
JWT_SECRET, or else with the generated development secret in .data/dev-jwt-secret. Prints the
token alone on stdout: TOKEN=$(npm run --silent token -- --sub alice)

Options:
  --sub <user>       the token's subject: the owner of the tasks it creates (required)
  --scope <scopes>   space-separated scopes, e.g. "tasks:read" (default: none, which grants
                     tasks:read and tasks:write)
  --ttl <lifetime>   how long it lives: 3600, 90s, 15m, 12h or 7d (default: 1h; at most
                     JWT_MAX_TOKEN_AGE_SECONDS, 24h unless set)
  --email <email>    an email claim (shown by GET /api/v1/me)
  --name <name>      a name claim
  --force            mint even with NODE_ENV=production
  -h, --help         this help
`;

let parsed;
try {
  parsed = parseArgs({
    options: {
      sub: { type: 'string' },
      scope: { type: 'string' },
      ttl: { type: 'string', default: '1h' },
      email: { type: 'string' },
      name: { type: 'string' },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
} catch (error) {
  // An unknown option or a missing value: say which, and how to call it.
  process.stderr.write(`token: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
  process.exit(1);
}
const { values } = parsed;
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (!values.sub) fail('--sub is required, e.g. npm run --silent token -- --sub alice (--help for every option)');

let config;
try {
  config = loadConfig();
} catch (error) {
  fail(error instanceof ConfigError ? error.message : String(error));
}
if (config.nodeEnv === 'production' && !values.force) {
  fail(
    'NODE_ENV is production: minting a token with the production secret is refused; use a real issuer, or add --force if you mean it',
  );
}
const ttl = ttlSeconds(values.ttl);
if (ttl > config.jwt.maxTokenAgeSeconds) {
  fail(
    `--ttl ${values.ttl} is longer than the server accepts (JWT_MAX_TOKEN_AGE_SECONDS=${config.jwt.maxTokenAgeSeconds})`,
  );
}
const { jwt } = await withDevSecret(config.jwt);
if (jwt.secret === undefined) {
  fail('the server verifies tokens from JWT_JWKS_URL only; get a token from that issuer (or set JWT_SECRET)');
}

const builder = new SignJWT({
  ...(values.scope !== undefined ? { scope: values.scope } : {}),
  ...(values.email !== undefined ? { email: values.email } : {}),
  ...(values.name !== undefined ? { name: values.name } : {}),
})
  .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
  .setSubject(values.sub)
  .setIssuedAt()
  .setExpirationTime(Math.floor(Date.now() / 1000) + ttl);
if (jwt.issuer) builder.setIssuer(jwt.issuer);
if (jwt.audience) builder.setAudience(jwt.audience);
process.stdout.write(`${await builder.sign(new TextEncoder().encode(jwt.secret))}\n`);
