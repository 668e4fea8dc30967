// Bench only: the API as src/main.ts builds it (the compiled dist/), with the layers named in
// BENCH_WITHOUT (comma-separated) left out, so `npm run bench -- --ablation` can measure what each
// costs. 'jwt' verifies no signature (the token's claims are only decoded); the other names are
// AppDeps.without. Nothing outside bench/ starts the API this way.
import { decodeJwt } from 'jose';
import { buildApp } from '../../dist/src/app.js';
import { createTokenVerifier } from '../../dist/src/auth/token-verifier.js';
import { ownerIdFromVerifiedSubject } from '../../dist/src/auth/owner-id.js';
import { SCOPES } from '../../dist/src/auth/auth-context.js';
import { loadConfig } from '../../dist/src/config.js';
import { openDatabase } from '../../dist/src/db/database.js';
import { loadContract } from '../../dist/src/http/contract.js';
import { createHttpServer } from '../../dist/src/http/http-server.js';
import { createLogger } from '../../dist/src/logger.js';

const without = new Set((process.env.BENCH_WITHOUT ?? '').split(',').filter(Boolean));
const config = loadConfig();
const logger = createLogger(config.log);
const database = await openDatabase({ ...config.database, logger });
const verifier = without.has('jwt')
  ? {
      async verify(token) {
        const { sub } = decodeJwt(token);
        return { ownerId: ownerIdFromVerifiedSubject(sub), sub, scopes: new Set(SCOPES), roles: [], email: null, name: null };
      },
    }
  : createTokenVerifier(config.jwt);
without.delete('jwt');
const server = createHttpServer(config.http);
server.on('request', buildApp({ config, database, logger, verifier, contract: loadContract(), without }));
server.listen(config.port, config.host);
process.on('SIGTERM', () => server.close(() => database.close().then(() => process.exit(0))));
