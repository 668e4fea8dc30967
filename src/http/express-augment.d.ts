import type { AuthContext } from '../auth/auth-context.js';
import type { HttpProblem } from '../errors/problem.js';
import type { RequestKind } from './capacity.js';

declare global {
  namespace Express {
    interface Request {
      /** Set by the request-context middleware for every request. */
      id: string;
      /** Set by the bearer security handler once the token is verified. */
      auth?: AuthContext;
      /** Why the security handler refused the request (the validator keeps only a status). */
      authFailure?: HttpProblem;
      /** How the request uses the server (an ordinary request or a transfer), set by the capacity guard for API requests. */
      capacityKind?: RequestKind;
      /** Aborted (with the problem to answer) when an upload moves slower than the minimum rate; its handler stops reading. */
      transferAborted?: AbortSignal;
      /** Set by express-openapi-validator for requests that match a documented route. */
      openapi?: { openApiRoute?: string };
    }
  }
}
export {};
