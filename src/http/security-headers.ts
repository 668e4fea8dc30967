import type { Request, RequestHandler, Response } from 'express';
import helmet from 'helmet';

/** Security headers for a JSON API: nothing on a response may load or frame anything. */
const HELMET_OPTIONS: Parameters<typeof helmet>[0] = {
  contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
  crossOriginResourcePolicy: { policy: 'same-site' },
};

/**
 * What helmet does to a response, found by running it once against one that only records it: the
 * headers it sets, in its order, and those it removes (X-Powered-By). With these options nothing
 * depends on the request (no CSP nonce), so every response gets the same.
 */
function helmetEffect(): { set: [name: string, value: string][]; removed: string[] } {
  const set = new Map<string, [name: string, value: string]>();
  const removed = new Map<string, string>();
  const recorder = {
    setHeader: (name: string, value: unknown) => {
      removed.delete(name.toLowerCase());
      set.set(name.toLowerCase(), [name, String(value)]);
    },
    removeHeader: (name: string) => {
      set.delete(name.toLowerCase());
      removed.set(name.toLowerCase(), name);
    },
  };
  void helmet(HELMET_OPTIONS)({} as Request, recorder as unknown as Response, (error?: unknown) => {
    if (error instanceof Error) throw error; // a CSP directive worked out per request can fail: there is none here
  });
  return { set: [...set.values()], removed: [...removed.values()] };
}

/**
 * Security headers (helmet's): set on every response from the list helmet's middleware was found
 * to write, worked out once at start-up, instead of running helmet's chain of middleware for each
 * request. The reference page at /docs replaces the CSP with its own, which pins its inline scripts.
 */
export function securityHeaders(): RequestHandler {
  const { set, removed } = helmetEffect();
  const names = set.map(([name]) => name);
  const values = set.map(([, value]) => value);
  return (_req, res, next) => {
    for (let i = 0; i < names.length; i++) res.setHeader(names[i]!, values[i]!);
    for (const name of removed) res.removeHeader(name);
    next();
  };
}

/**
 * The headers {@link securityHeaders} sets (they are the same on every response), for answers
 * written where no middleware runs.
 */
export function securityHeaderValues(): Record<string, string> {
  return Object.fromEntries(helmetEffect().set);
}
