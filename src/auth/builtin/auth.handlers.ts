import { NO_STORE, type Handlers } from '../../http/handler.js';
import { BuiltinAuthDisabled } from './errors.js';
import type { BuiltinIssuer } from './issuer.js';

type AuthOperation = 'register' | 'login' | 'refreshToken' | 'logout' | 'getJwks';

/**
 * The built-in issuer's operations. They are in the contract whether or not it is enabled, so
 * clients and docs see one API; with AUTH_BUILTIN off each answers 404 problem+json.
 */
export function authHandlers(issuer: BuiltinIssuer | undefined): Handlers<AuthOperation> {
  const enabled = (): BuiltinIssuer => {
    if (issuer === undefined) throw new BuiltinAuthDisabled();
    return issuer;
  };
  return {
    async register({ body }) {
      return { status: 201, body: await enabled().register(body.email, body.password), headers: NO_STORE };
    },
    async login({ body, raw }) {
      return {
        status: 200,
        body: await enabled().login(body.email, body.password, raw.ip ?? 'unknown'),
        headers: NO_STORE,
      };
    },
    async refreshToken({ body }) {
      return { status: 200, body: await enabled().refresh(body.refresh_token), headers: NO_STORE };
    },
    async logout({ body }) {
      await enabled().logout(body.refresh_token);
      return { status: 204 };
    },
    async getJwks() {
      return { status: 200, body: await enabled().jwks(), headers: { 'Cache-Control': 'public, max-age=300' } };
    },
  };
}
