import type { Request, RequestHandler } from 'express';
import type { operations } from '../../generated/api.js';
import type { AuthContext } from '../auth/auth-context.js';

/** Every operationId in the contract. */
export type OperationId = keyof operations;

type Op<K extends OperationId> = operations[K];
type Params<K extends OperationId> = Op<K>['parameters'];
type ContentOf<T> = T extends { content: infer C } ? C[keyof C] : undefined;
type SuccessStatus = 200 | 201 | 202 | 204 | 304;
type Responses<K extends OperationId> = Op<K>['responses'];
type Statuses<K extends OperationId> = Extract<keyof Responses<K>, SuccessStatus>;
type ResponseHeaders = Record<string, string>;

/** What a handler gets: the request as the validator let it through, typed from the contract. */
export interface OperationRequest<K extends OperationId> {
  /** The verified caller. Reading it in an operation without security is a programming error. */
  readonly auth: AuthContext;
  readonly path: NonNullable<Params<K>['path']>;
  readonly query: NonNullable<Params<K>['query']>;
  readonly body: ContentOf<NonNullable<Op<K>['requestBody']>>;
  /** The underlying request, for what the contract does not type (URLs, raw headers). */
  readonly raw: Request;
}

type Reply<S, B> = [B] extends [undefined]
  ? { status: S; body?: undefined; headers?: ResponseHeaders }
  : { status: S; body: B; headers?: ResponseHeaders };

/** One of the operation's documented success responses, with the body the contract gives it. */
export type OperationResult<K extends OperationId> = {
  [S in Statuses<K>]: Reply<S, ContentOf<Responses<K>[S]>>;
}[Statuses<K>];

export type OperationHandler<K extends OperationId> = (request: OperationRequest<K>) => Promise<OperationResult<K>>;

/** Handlers for some operations; a key that is not an operationId is a compile error. */
export type Handlers<K extends OperationId> = { [P in K]: OperationHandler<P> };

/** Exactly one handler per operation: a missing or extra key does not compile. */
export type HandlerMap = Handlers<OperationId>;

/** Adapts a typed handler to Express. Errors reach the error handler (Express 5 forwards rejections). */
export function toExpress<K extends OperationId>(operationId: K, handler: OperationHandler<K>): RequestHandler {
  return async (req, res) => {
    const request = {
      get auth(): AuthContext {
        if (!req.auth) throw new Error(`operation ${operationId} read auth but declares no security`);
        return req.auth;
      },
      path: req.params,
      query: req.query,
      body: req.body,
      raw: req,
    } as unknown as OperationRequest<K>;
    const result = await handler(request);
    // The request timeout may have answered 503 already; the work is done, the client has gone.
    if (res.headersSent) return;
    if (result.headers) res.set(result.headers);
    res.status(result.status);
    if (result.body === undefined) {
      res.end();
    } else if (typeof result.body === 'string') {
      res.send(result.body);
    } else {
      res.json(result.body);
    }
  };
}
