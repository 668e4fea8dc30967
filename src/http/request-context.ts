import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';

const acceptableId = /^[\w.:-]{1,128}$/;

/**
 * Gives every request an id (the caller's `X-Request-Id` when it is a sane token, so traces can
 * be followed across services, else a new UUID) as `req.id`, and echoes it in the response
 * header. Every log line written for a request passes `request_id: req.id` explicitly: on Node 20
 * AsyncLocalStorage would do it implicitly, but its promise hooks cost about a tenth of the
 * throughput (npm run bench).
 */
export function requestContext(): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id');
    const requestId = incoming && acceptableId.test(incoming) ? incoming : randomUUID();
    req.id = requestId;
    res.setHeader('X-Request-Id', requestId);
    next();
  };
}
