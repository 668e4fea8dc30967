import type { Request, RequestHandler, Response } from 'express';
import helmet from 'helmet';

/**
 * Security headers for a JSON API (helmet): nothing on a response may load or frame anything.
 * The reference page at /docs replaces the CSP with its own, which pins its inline scripts.
 */
export function securityHeaders(): RequestHandler {
  return helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    crossOriginResourcePolicy: { policy: 'same-site' },
  });
}

/**
 * The headers {@link securityHeaders} sets (they are the same on every response), for answers
 * written where no middleware runs: helmet run once against a response that only records them.
 */
export function securityHeaderValues(): Record<string, string> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader: (name: string, value: unknown) => void (headers[name] = String(value)),
    removeHeader: (name: string) => void delete headers[name],
  };
  void securityHeaders()({} as Request, recorder as unknown as Response, () => undefined);
  return headers;
}
