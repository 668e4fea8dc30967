import express, { type Express } from 'express';
import type { TokenVerifier } from './auth/token-verifier.js';
import type { Config } from './config.js';
import type { Database } from './db/database.js';
import { accessLog } from './http/access-log.js';
import type { Contract } from './http/contract.js';
import { errorHandler } from './http/error-handler.js';
import { openApiRoutes } from './http/openapi.js';
import { requestContext } from './http/request-context.js';
import type { Logger } from './logger.js';
import { buildOperations } from './operations.js';

export interface AppDeps {
  config: Pick<Config, 'bodyLimitBytes'>;
  database: Database;
  logger: Logger;
  verifier: TokenVerifier;
  contract: Contract;
  /** Check every response against the contract too (tests turn this on; it costs throughput). */
  validateResponses?: boolean;
}

/**
 * The whole HTTP application: request id → access log → JSON body (size-limited) → OpenAPI
 * validator (with the bearer security handler) → operation handlers → problem+json errors.
 * Does no I/O; everything it needs arrives in `deps`.
 */
export function buildApp(deps: AppDeps): Express {
  const { config, database, logger, verifier, contract } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(requestContext());
  app.use(accessLog(logger));
  app.use(express.json({ limit: config.bodyLimitBytes, type: ['application/json', 'application/*+json'] }));
  app.use(
    openApiRoutes({
      spec: contract.spec,
      handlers: buildOperations({ database, contract }),
      verifier,
      logger,
      validateResponses: deps.validateResponses ?? false,
    }),
  );
  app.use(errorHandler(logger));
  return app;
}
