import type { RequestHandler } from 'express';
import type { Logger } from '../logger.js';

/** One line per request once its response is sent: method, route template, status, duration, request id. */
export function accessLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      // The line as one object (winston's cheapest call: no copy of the fields into a new one);
      // the same fields, in the same line, as logger.info('request', { ... }).
      logger.info({
        message: 'request',
        request_id: req.id,
        method: req.method,
        route: req.openapi?.openApiRoute ?? null,
        status: res.statusCode,
        duration_ms: Math.round(durationMs * 100) / 100,
      });
    });
    next();
  };
}
