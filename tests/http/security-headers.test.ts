import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { describe, expect, it } from '@jest/globals';
import type { Request, Response } from 'express';
import helmet from 'helmet';
import { securityHeaders, securityHeaderValues } from '../../src/http/security-headers.js';

/** getRawHeaderNames (Node ≥ 15.13), which @types/node 20 does not describe: the names as set, in order. */
type Recorded = ServerResponse & { getRawHeaderNames(): string[] };

/** A fresh response as Node makes it, with the header Express adds when x-powered-by is on. */
function response(): Recorded {
  const res = new ServerResponse(new IncomingMessage(new Socket())) as Recorded;
  res.setHeader('X-Powered-By', 'Express');
  return res;
}

describe('securityHeaders', () => {
  it('sets on every response the headers helmet worked out at start-up, in its order and case, and removes X-Powered-By', () => {
    const values = securityHeaderValues();
    expect(values).toMatchObject({
      'Content-Security-Policy': "default-src 'none';frame-ancestors 'none'",
      'Cross-Origin-Resource-Policy': 'same-site',
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'SAMEORIGIN',
    });
    expect(values).not.toHaveProperty('X-Powered-By');
    const middleware = securityHeaders();
    for (let i = 0; i < 2; i++) {
      const res = response();
      let nexts = 0;
      void middleware({} as Request, res as unknown as Response, () => void nexts++);
      expect(nexts).toBe(1);
      expect(res.getRawHeaderNames()).toEqual(Object.keys(values));
      expect(Object.fromEntries(res.getRawHeaderNames().map((name) => [name, res.getHeader(name)]))).toEqual(values);
    }
  });

  it('sets what helmet itself sets when run on the response with the same options', () => {
    const ours = response();
    void securityHeaders()({} as Request, ours as unknown as Response, () => undefined);
    const helmets = response();
    void helmet({
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
      crossOriginResourcePolicy: { policy: 'same-site' },
    })(new IncomingMessage(new Socket()), helmets, () => undefined);
    expect(ours.getRawHeaderNames()).toEqual(helmets.getRawHeaderNames());
    expect(ours.getHeaders()).toEqual(helmets.getHeaders());
  });

  it('leaves a handler free to replace a header afterwards (the /docs page sets its own CSP)', () => {
    const res = response();
    void securityHeaders()({} as Request, res as unknown as Response, () => undefined);
    res.setHeader('Content-Security-Policy', "default-src 'none'; script-src 'sha256-x'");
    expect(res.getHeader('content-security-policy')).toBe("default-src 'none'; script-src 'sha256-x'");
  });
});
