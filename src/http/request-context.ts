import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';

interface RequestStore {
  requestId: string;
}

const storage = new AsyncLocalStorage<RequestStore>();
const acceptableId = /^[\w.:-]{1,128}$/;

/** The id of the request being served, for log lines written anywhere below the middleware. */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}

/**
 * Gives every request an id (the caller's `X-Request-Id` when it is a sane token, so traces can
 * be followed across services, else a new UUID), echoes it in the response header and makes it
 * visible to every log line of the request through AsyncLocalStorage.
 */
export function requestContext(): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id');
    const requestId = incoming && acceptableId.test(incoming) ? incoming : randomUUID();
    req.id = requestId;
    res.setHeader('X-Request-Id', requestId);
    storage.run({ requestId }, next);
  };
}
