// @ts-check
// Bench only: the API as src/main.ts builds it (the compiled dist/), with the layers named in
// BENCH_WITHOUT (comma-separated) left out, so `npm run bench -- --ablation` can measure what each
// costs. It assembles its own app from the stages src/app.ts builds the API from (appStages,
// assembleApp), the same ones in the same order, less what it leaves out:
// - access-log, metrics, security-headers, host-header, rate-limit, request-timeout: that stage,
//   whole;
// - capacity: in its stead, only the JSON body parser it runs (with no deadline), so the operations
//   still get their bodies;
// - validator: in its stead, a stage that only verifies the bearer token (the operations need the
//   caller), so nothing else of the contract is checked;
// - jwt: a verifier that checks no signature (the token's claims are only decoded);
// - owner-scope: the operations on an owner scope of this file's, the plain pool without the role
//   and the row-level-security settings.
// src/ has no notion of any of this; nothing outside bench/ starts the API this way.
import express from 'express';
import { decodeJwt } from 'jose';
import { appStages, assembleApp } from '../../dist/src/app.js';
import { bearerSecurityHandler } from '../../dist/src/auth/bearer-security.js';
import { createTokenVerifier } from '../../dist/src/auth/token-verifier.js';
import { ownerIdFromVerifiedSubject } from '../../dist/src/auth/owner-id.js';
import { SCOPES } from '../../dist/src/auth/auth-context.js';
import { loadConfig } from '../../dist/src/config.js';
import { openDatabase } from '../../dist/src/db/database.js';
import { loadContract } from '../../dist/src/http/contract.js';
import { createHttpServer } from '../../dist/src/http/http-server.js';
import { createLogger } from '../../dist/src/logger.js';

/** Stages left out whole. */
const DROPPED = ['access-log', 'metrics', 'security-headers', 'host-header', 'rate-limit', 'request-timeout'];
const LAYERS = [...DROPPED, 'capacity', 'validator', 'jwt', 'owner-scope'];

const without = new Set((process.env.BENCH_WITHOUT ?? '').split(',').filter(Boolean));
const unknown = [...without].filter((layer) => !LAYERS.includes(layer));
if (unknown.length > 0) {
  // Measuring the whole app under another name would go unnoticed in the figures.
  process.stderr.write(`ablation-server: no layer ${unknown.join(', ')} (there are ${LAYERS.join(', ')})\n`);
  process.exit(2);
}

/**
 * The owner scope's stand-in: the same work on the plain pool, as the pool's role, with no role
 * switch and no owner setting; what the owner scope costs is the difference.
 * @param {import('../../dist/src/db/database.js').Database} database
 * @returns {import('../../dist/src/db/owner-scope.js').OwnerScope}
 */
function unscoped({ db }) {
  return Object.assign(
    /** @type {<T>(owner: unknown, work: (scoped: typeof db) => Promise<T>) => Promise<T>} */ (
      (_owner, work) => work(db)
    ),
    {
      transaction: /** @type {<T>(owner: unknown, work: (scoped: typeof db) => Promise<T>) => Promise<T>} */ (
        (_owner, work) => db.transaction().execute(work)
      ),
    },
  );
}

const config = loadConfig();
const logger = createLogger(config.log);
const database = await openDatabase({ ...config.database, logger });
/** @type {import('../../dist/src/auth/token-verifier.js').TokenVerifier} */
const verifier = without.has('jwt')
  ? {
      async verify(token) {
        const { sub } = decodeJwt(token);
        return {
          ownerId: ownerIdFromVerifiedSubject(/** @type {string} */ (sub)),
          sub: /** @type {string} */ (sub),
          scopes: new Set(SCOPES),
          roles: [],
          email: null,
          name: null,
        };
      },
    }
  : createTokenVerifier(config.jwt);

const security = bearerSecurityHandler(verifier, logger);
/** @type {import('express').RequestHandler} */
const tokenOnly = (req, _res, next) => void security(req, []).then(() => next(), next);

/** The capacity stage's JSON body parser, alone. */
const bodyOnly = express.json({ limit: config.bodyLimitBytes, type: ['application/json', 'application/*+json'] });

const stages = appStages({
  config,
  database,
  logger,
  verifier,
  contract: loadContract(),
  asOwner: without.has('owner-scope') ? unscoped(database) : undefined,
})
  .filter((stage) => !(DROPPED.includes(stage.name) && without.has(stage.name)))
  .map((stage) =>
    stage.name === 'validator' && without.has('validator')
      ? { name: stage.name, handlers: [tokenOnly] }
      : stage.name === 'capacity' && without.has('capacity')
        ? { name: stage.name, handlers: [bodyOnly] }
        : stage,
  );
const server = createHttpServer(config.http);
server.on('request', assembleApp(stages, config));
server.listen(config.port, config.host);
process.on('SIGTERM', () => server.close(() => database.close().then(() => process.exit(0))));
