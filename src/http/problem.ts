import type { components } from '../../generated/api.js';

export type Problem = components['schemas']['Problem'];
export type FieldError = NonNullable<Problem['errors']>[number];

/** The stable `type` of a problem, derived from its code: `TASK_NOT_FOUND` → `urn:tasks-api:problem:task-not-found`. */
export function problemType(code: string): string {
  return `urn:tasks-api:problem:${code.toLowerCase().replace(/_/g, '-')}`;
}

/**
 * An error that becomes one RFC 9457 response. Subclasses name a stable `code` (tests and
 * clients branch on it, never on the message); `detail` is safe to show to the caller.
 */
export class HttpProblem extends Error {
  override name = this.constructor.name;
  readonly headers: Record<string, string>;
  readonly errors?: FieldError[];

  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    detail: string,
    options: { headers?: Record<string, string>; errors?: FieldError[]; cause?: unknown } = {},
  ) {
    super(detail, { cause: options.cause });
    this.headers = options.headers ?? {};
    this.errors = options.errors;
  }

  toProblem(instance: string, requestId: string): Problem {
    return {
      type: problemType(this.code),
      title: this.title,
      status: this.status,
      detail: this.message,
      instance,
      request_id: requestId,
      ...(this.errors ? { errors: this.errors } : {}),
    };
  }
}

/** 422: the request is well-formed but breaks the contract. */
export class ValidationFailed extends HttpProblem {
  constructor(errors: FieldError[], detail = 'The request does not match the API contract.') {
    super(422, 'VALIDATION_FAILED', 'Validation failed', detail, { errors });
  }
}

/** 503: a dependency is down; the client should retry. */
export class ServiceUnavailable extends HttpProblem {
  constructor(detail: string, cause?: unknown) {
    super(503, 'SERVICE_UNAVAILABLE', 'Service unavailable', detail, { headers: { 'Retry-After': '5' }, cause });
  }
}
