import * as OpenApiValidator from 'express-openapi-validator';
import type { RequestHandler } from 'express';
import type { Logger } from '../logger.js';
import type { TokenVerifier } from '../auth/token-verifier.js';
import { bearerSecurityHandler } from '../auth/bearer-security.js';
import { operationIdsOf, type OpenApiDocument } from './contract.js';
import { toExpress, type HandlerMap, type OperationId } from './handler.js';

/** Fails at boot when the contract's operations and the handler map are not the same set. */
export function assertHandlersMatchSpec(spec: OpenApiDocument, handlers: HandlerMap): void {
  const inSpec = new Set(operationIdsOf(spec));
  const inMap = new Set(Object.keys(handlers));
  const unhandled = [...inSpec].filter((id) => !inMap.has(id));
  const undeclared = [...inMap].filter((id) => !inSpec.has(id));
  if (unhandled.length > 0 || undeclared.length > 0) {
    throw new Error(
      `the handler map does not match the contract: ${[
        unhandled.length > 0 ? `operations without a handler: ${unhandled.join(', ')}` : '',
        undeclared.length > 0 ? `handlers without an operation: ${undeclared.join(', ')}` : '',
      ].filter(Boolean).join('; ')}`,
    );
  }
}

/**
 * The gate and the router in one: express-openapi-validator checks path, query, headers, body and
 * the bearer token (with the operation's scopes) against the contract, then mounts every
 * operation of the spec on the handler with its operationId, through our own resolver.
 */
export function openApiRoutes(options: {
  spec: OpenApiDocument;
  handlers: HandlerMap;
  verifier: TokenVerifier;
  logger: Logger;
  validateResponses: boolean;
}): RequestHandler[] {
  const { spec, handlers, verifier, logger } = options;
  assertHandlersMatchSpec(spec, handlers);
  return OpenApiValidator.middleware({
    // The validator annotates the document it is given; keep the served copy pristine.
    apiSpec: structuredClone(spec) as never,
    validateApiSpec: true,
    // allErrors: one `errors[]` entry per offending field, not just the first (bodies are size-limited).
    validateRequests: { allowUnknownQueryParameters: false, removeAdditional: false, allErrors: true },
    validateResponses: options.validateResponses ? { removeAdditional: false } : false,
    validateFormats: true,
    validateSecurity: { handlers: { bearerAuth: bearerSecurityHandler(verifier, logger) } },
    operationHandlers: {
      basePath: '',
      resolver: (_basePath, route, apiDoc) => {
        const pathItem = apiDoc.paths?.[route.openApiRoute.substring(route.basePath.length)] as Record<string, { operationId: OperationId }>;
        const operationId = pathItem[route.method.toLowerCase()]!.operationId;
        return toExpress(operationId, handlers[operationId] as never);
      },
    },
  }) as unknown as RequestHandler[];
}
