import type { components } from './api.js';

/** An RFC 9457 problem document: the body of every error response the API sends. */
export type Problem = components['schemas']['Problem'];

/**
 * Every problem the contract defines (its `*Problem` schemas): narrow with
 * `ProblemError.is(status)`, or on the plain result's `error.status`.
 */
export type AnyProblem = {
  [K in keyof components['schemas']]: K extends `${string}Problem` ? components['schemas'][K] : never;
}[keyof components['schemas']];

/** What every problem has, whatever the operation's own error type narrows it to. */
type ProblemShape = { type: string; title: string; status: number; detail: string };

/**
 * An error response as an exception: `status`, `type` (branch on it, e.g.
 * `urn:tasks-api:problem:validation-failed`), the whole typed `problem` (for 422, `errors[]`
 * names each field) and the `response` (headers such as `Retry-After`).
 *
 * A response that is not problem+json (a proxy's HTML 502, a 304 reaching `unwrap`) still becomes
 * a ProblemError, with `type: 'about:blank'` and the status text as its title, as RFC 9457 says.
 */
export class ProblemError<P extends ProblemShape = AnyProblem> extends Error {
  override readonly name = 'ProblemError';
  readonly status: P['status'];
  readonly type: P['type'];
  readonly problem: P;
  readonly response: Response;

  constructor(problem: P, response: Response) {
    super(`${problem.status} ${problem.title}: ${problem.detail}`);
    this.problem = problem;
    this.status = problem.status;
    this.type = problem.type;
    this.response = response;
  }

  /**
   * Whether this is the problem of `status`, narrowing `problem` to the contract's problems of
   * that status: `if (error instanceof ProblemError && error.is(422)) error.problem.errors`.
   */
  is<S extends P['status']>(status: S): this is ProblemError<Narrowed<P, S>> {
    return this.status === status;
  }

  /** The error for a response and its parsed body, problem+json or not. */
  static from<P extends ProblemShape = AnyProblem>(response: Response, body: unknown): ProblemError<P> {
    return new ProblemError(isProblem(body) ? (body as P) : (synthetic(response, body) as unknown as P), response);
  }
}

type Narrowed<P extends ProblemShape, S> = [Extract<P, { status: S }>] extends [never] ? P : Extract<P, { status: S }>;

function isProblem(body: unknown): body is ProblemShape {
  if (typeof body !== 'object' || body === null) return false;
  const { type, title, status, detail } = body as Record<string, unknown>;
  return (
    typeof type === 'string' && typeof title === 'string' && typeof status === 'number' && typeof detail === 'string'
  );
}

function synthetic(response: Response, body: unknown): Problem {
  const text = typeof body === 'string' ? body.slice(0, 500) : '';
  return {
    type: 'about:blank',
    title: response.statusText || `HTTP ${response.status}`,
    status: response.status,
    detail: text || `The API answered ${response.status} without a problem document.`,
    request_id: response.headers.get('X-Request-Id') ?? '',
  };
}

/** The result of every client call: openapi-fetch's `{ data, error, response }`. */
type Result = { data?: unknown; error?: unknown; response: Response };

/** The error type of a result, as a problem (every documented error of the contract is one). */
type ErrorOf<R extends Result> = [Extract<R['error'], ProblemShape>] extends [never]
  ? AnyProblem
  : Extract<R['error'], ProblemShape>;

/**
 * The data of a successful call, or a thrown {@link ProblemError} for any other status:
 * `const task = await unwrap(api.GET('/api/v1/tasks/{taskId}', …))`.
 *
 * Calls whose success has no body (204) resolve to `undefined`. A 304 is not a success here:
 * conditional GETs should read the plain result instead.
 */
export async function unwrap<R extends Result>(call: Promise<R> | R): Promise<Exclude<R['data'], undefined>> {
  const result = await call;
  if (!result.response.ok) throw ProblemError.from<ErrorOf<R>>(result.response, result.error);
  return result.data as Exclude<R['data'], undefined>;
}
