import type { components } from '../../generated/api.js';

/*
 * Problem types (RFC 9457): the errors every layer throws and the error handler turns into
 * application/problem+json. This module is a leaf: it imports nothing from src/ (only the
 * contract's generated types), so auth, db, the features and http/ may all import it without
 * one layer reaching into another (.dependency-cruiser.cjs holds it to that).
 */

export type Problem = components['schemas']['Problem'];
export type FieldError = NonNullable<Problem['errors']>[number];

/** The stable `type` of a problem, derived from its code: `TASK_NOT_FOUND` → `urn:tasks-api:problem:task-not-found`. */
export function problemType(code: string): string {
  return `urn:tasks-api:problem:${code.toLowerCase().replace(/_/g, '-')}`;
}

/** The contract's `maxLength` of a field error's `pointer` (Problem.yaml). */
export const MAX_POINTER = 512;

/** `pointer` cut to {@link MAX_POINTER} characters, never ending inside a `~0`/`~1` escape. */
export const boundedPointer = (pointer: string): string => pointer.slice(0, MAX_POINTER).replace(/~$/, '');

/** A name as one RFC 6901 JSON Pointer reference token: `~` → `~0`, `/` → `~1`. */
export const pointerSegment = (name: string): string => name.replace(/~/g, '~0').replace(/\//g, '~1');

/** The contract's `maxLength` of a problem's `detail` and `instance` (Problem.yaml). */
const MAX_DETAIL = 2000;
const MAX_INSTANCE = 2048;
/** `text` if it fits in `max` characters, else its beginning and an ellipsis, `max` in all. */
const cut = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);

/**
 * The most `errors[]` entries a problem carries (the contract's `maxItems`); `errors_total` counts
 * them all. A hostile body can break a rule thousands of times; its answer stays small.
 */
export const MAX_FIELD_ERRORS = 20;

/**
 * An error that becomes one RFC 9457 response. Subclasses name a stable `code` (tests and
 * clients branch on it, never on the message); `detail` is safe to show to the caller.
 */
export class HttpProblem extends Error {
  override name = this.constructor.name;
  readonly headers: Record<string, string>;
  /** The first {@link MAX_FIELD_ERRORS} field errors. */
  readonly errors?: FieldError[];
  /** How many field errors there were in all (more than `errors.length` when the list was cut). */
  readonly errorsTotal?: number;

  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    detail: string,
    options: { headers?: Record<string, string>; errors?: FieldError[]; errorsTotal?: number; cause?: unknown } = {},
  ) {
    super(detail, { cause: options.cause });
    this.headers = options.headers ?? {};
    this.errors = options.errors?.slice(0, MAX_FIELD_ERRORS);
    if (options.errors) this.errorsTotal = Math.max(options.errorsTotal ?? 0, options.errors.length);
  }

  /** The document; `detail` and `instance` cut to the lengths the contract declares (a request path can be 16 KiB). */
  toProblem(instance: string, requestId: string): Problem {
    return {
      type: problemType(this.code),
      title: this.title,
      status: this.status,
      detail: cut(this.message, MAX_DETAIL),
      instance: cut(instance, MAX_INSTANCE),
      request_id: requestId,
      ...(this.errors ? { errors: this.errors, errors_total: this.errorsTotal } : {}),
    };
  }
}

/** 422: the request is well-formed but breaks the contract. */
export class ValidationFailed extends HttpProblem {
  /** `errors` beyond the first {@link MAX_FIELD_ERRORS} are dropped; `total` counts them all (default: `errors.length`). */
  constructor(errors: FieldError[], detail = 'The request does not match the API contract.', total = errors.length) {
    super(422, 'VALIDATION_FAILED', 'Validation failed', detail, { errors, errorsTotal: total });
  }
}

/** 404: no operation of the contract is at this method and path. */
export class NoRoute extends HttpProblem {
  constructor(method: string, path: string) {
    super(404, 'NOT_FOUND', 'Not found', `No route ${method} ${path}.`);
  }
}

/** 503: a dependency is down; the client should retry. */
export class ServiceUnavailable extends HttpProblem {
  constructor(detail: string, cause?: unknown) {
    super(503, 'SERVICE_UNAVAILABLE', 'Service unavailable', detail, { headers: { 'Retry-After': '5' }, cause });
  }
}

/**
 * The client went away (or Node gave up on it) before its request was read to the end: there is
 * nobody to answer. The error handler logs it and sends nothing.
 */
export class ClientGone extends Error {
  override name = 'ClientGone';
  readonly code = 'CLIENT_GONE';
  constructor(cause?: unknown) {
    super('the client closed the connection before the request was complete', { cause });
  }
}
