import { attachmentHandlers } from './attachments/attachments.handlers.js';
import { attachmentService } from './attachments/attachments.service.js';
import type { BlobStore } from './attachments/blob-store.js';
import { attachmentMetrics } from './attachments/metrics.js';
import { postgresBlobStore } from './attachments/postgres-store.js';
import { changeHandlers } from './changes/changes.handlers.js';
import { changeFeed } from './changes/changes.service.js';
import { pollingSignals } from './changes/signals.js';
import { changeTokens } from './changes/token.js';
import type { AttachmentsConfig, ChangesConfig, WebhooksConfig } from './config.js';
import { authHandlers } from './auth/builtin/auth.handlers.js';
import type { BuiltinIssuer } from './auth/builtin/issuer.js';
import type { Database } from './db/database.js';
import type { OwnerScope } from './db/owner-scope.js';
import type { Contract } from './http/contract.js';
import type { HandlerMap } from './http/handler.js';
import type { Metrics } from './http/metrics.js';
import type { Logger } from './logger.js';
import { operationsEndpoints } from './http/operations-endpoints.js';
import { taskHandlers } from './tasks/tasks.handlers.js';
import { taskService } from './tasks/tasks.service.js';
import { meHandlers } from './users/me.handlers.js';
import { webhookHandlers } from './webhooks/webhooks.handlers.js';
import { webhookService } from './webhooks/webhooks.service.js';

/**
 * operationId → handler, for every operation of the contract. The type makes a missing handler,
 * a handler for an operation the spec does not have, or a body the spec does not allow a compile
 * error; `operationsRouter` checks the same at boot against the bundled spec.
 */
export function buildOperations(deps: {
  database: Database;
  /** The only way the operations reach owners' rows (ownerScope(database) in the app). */
  asOwner: OwnerScope;
  contract: Contract;
  metrics: Metrics;
  metricsToken?: string;
  metricsOff?: boolean;
  issuer?: BuiltinIssuer;
  stopping?: () => boolean;
  /** Why the process has no room for more traffic (load shedding), for readiness. */
  saturated?: () => string | undefined;
  attachments: AttachmentsConfig;
  /** What webhook endpoints may be registered, and how secrets rotate. */
  webhooks: Pick<WebhooksConfig, 'requireHttps' | 'allowedAddresses' | 'secretGraceSeconds'>;
  /** Where attachments' bytes live; PostgreSQL itself when not given. */
  blobStore?: BlobStore;
  /** The change feed's retention and the streams' timing. */
  changes: ChangesConfig;
  /** Aborted when the process begins to shut down: change streams end. */
  shutdown: AbortSignal;
  logger: Logger;
}): HandlerMap {
  const { database, asOwner, contract, metrics, metricsToken, metricsOff, issuer, stopping } = deps;
  const attachments = attachmentService({
    asOwner,
    store: deps.blobStore ?? postgresBlobStore(asOwner),
    limits: deps.attachments,
    metrics: attachmentMetrics(metrics.registry),
  });
  return {
    ...taskHandlers(database.db, asOwner),
    ...attachmentHandlers(attachments),
    ...webhookHandlers(webhookService({ asOwner, config: deps.webhooks })),
    ...changeHandlers({
      feed: changeFeed({ asOwner, tokens: changeTokens(database.db), retentionDays: deps.changes.retentionDays }),
      signals: pollingSignals(database.db, deps.changes.pollMs, deps.logger),
      config: deps.changes,
      shutdown: deps.shutdown,
    }),
    ...meHandlers({ countTasks: (owner) => asOwner(owner, (scoped) => taskService(scoped, owner).counts()) }),
    ...authHandlers(issuer),
    ...operationsEndpoints({
      contract,
      ping: () => database.ping(),
      metrics,
      metricsToken,
      metricsOff,
      stopping,
      saturated: deps.saturated,
    }),
  };
}
