import type { Request, RequestHandler, Response } from 'express';
import type { operations } from '../../generated/api.js';
import type { AuthContext } from '../auth/auth-context.js';

/**
 * Every operationId the API serves: the contract's operations but for the webhook events it
 * sends (under `webhooks:`, which carry the `webhook-id` header), which receivers implement.
 */
export type OperationId = {
  [K in keyof operations]: operations[K]['parameters'] extends { header: { 'webhook-id': string } } ? never : K;
}[keyof operations];

type Op<K extends OperationId> = operations[K];
type Params<K extends OperationId> = Op<K>['parameters'];
type ContentOf<T> = T extends { content: infer C } ? C[keyof C] : undefined;
type SuccessStatus = 200 | 201 | 202 | 204 | 206 | 304;
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

/**
 * A body sent as it is produced (a file read from storage), never held whole. Handlers of
 * operations whose content is not JSON may answer with one; `Content-Length` is theirs to set.
 */
export class StreamedBody {
  constructor(readonly source: AsyncIterable<Buffer>) {}
}

type Reply<S, B> = [B] extends [undefined]
  ? { status: S; body?: undefined; headers?: ResponseHeaders }
  : { status: S; body: [B] extends [string] ? B | StreamedBody : B; headers?: ResponseHeaders };

/** One of the operation's documented success responses, with the body the contract gives it. */
export type OperationResult<K extends OperationId> = {
  [S in Statuses<K>]: Reply<S, ContentOf<Responses<K>[S]>>;
}[Statuses<K>];

export type OperationHandler<K extends OperationId> = (request: OperationRequest<K>) => Promise<OperationResult<K>>;

/** Handlers for some operations; a key that is not an operationId is a compile error. */
/** For a response carrying a token or a secret: no cache (shared or the client's) may keep it. */
export const NO_STORE = { 'Cache-Control': 'no-store' } as const;

export type Handlers<K extends OperationId> = { [P in K]: OperationHandler<P> };

/** Exactly one handler per operation: a missing or extra key does not compile. */
export type HandlerMap = Handlers<OperationId>;

/** The most a streamed body writes to the socket at once. */
const SLICE_BYTES = 64 * 1024;

function* slices(piece: Buffer): Iterable<Buffer> {
  for (let at = 0; at < piece.length; at += SLICE_BYTES) yield piece.subarray(at, at + SLICE_BYTES);
}

/**
 * Sends a streamed body. Its first piece is read before anything is set on the response, so a
 * source that fails at once (storage down, bytes missing) is still an ordinary problem+json
 * answer. After that, a client that stops reading (its connection closed, or destroyed for being
 * too slow) ends the reads: nobody to answer. A later failure of the source goes on to the error
 * handler, which cuts the connection: the client sees fewer bytes than Content-Length promised,
 * never a complete-looking wrong file.
 *
 * Written slice by slice, waiting for `drain` when the socket is full, with one `close` and one
 * `drain` listener for the whole body, removed at the end. Not `stream.pipeline()`: into a
 * ServerResponse it adds seven `close` listeners of its own, and with those every request already
 * has (metrics, capacity, the request timeout, graceful shutdown) that passes Node's default of
 * ten: a MaxListenersExceededWarning on every download.
 */
async function sendStreamed(
  res: Response,
  status: number,
  headers: ResponseHeaders,
  source: AsyncIterable<Buffer>,
): Promise<void> {
  const pieces = source[Symbol.asyncIterator]();
  try {
    const first = await pieces.next();
    if (res.headersSent) return;
    res.set(headers).status(status);
    let closed = res.destroyed;
    let wake: (() => void) | undefined;
    const resume = () => wake?.();
    const onClose = () => {
      closed = true;
      resume();
    };
    res.once('close', onClose);
    res.on('drain', resume);
    try {
      for (let next = first; !next.done; next = await pieces.next()) {
        // A byte stream fed in small slices: a client that stops reading holds about SLICE_BYTES
        // here (and what the source holds), not a queue of whole pieces.
        for (const slice of slices(next.value)) {
          if (closed) return;
          if (!res.write(slice)) await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      }
      if (!closed) res.end();
    } finally {
      res.off('close', onClose);
      res.off('drain', resume);
    }
  } finally {
    await pieces.return?.();
  }
}

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
      body: req.body as unknown,
      raw: req,
    } as unknown as OperationRequest<K>;
    const result = await handler(request);
    // The request timeout may have answered 503 already; the work is done, the client has gone.
    if (res.headersSent) return;
    if (result.body instanceof StreamedBody) {
      await sendStreamed(res, result.status, result.headers ?? {}, result.body.source);
      return;
    }
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
