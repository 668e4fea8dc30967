import {
  context,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';

/**
 * What the code on the request and delivery paths needs of tracing, through the OpenTelemetry API
 * alone (a few KB, no SDK): every helper here returns at once while tracing is off, which is the
 * default. `src/telemetry/preload.ts` turns it on (OTEL_EXPORTER_OTLP_ENDPOINT set, the process
 * started with `--import`), registering the SDK and the http and pg instrumentations.
 */

let on = false;
let flush: () => Promise<void> = () => Promise.resolve();

/** Called once by the preload when the SDK is registered; `shutdown` exports what is buffered. */
export function tracingStarted(shutdown: () => Promise<void>): void {
  on = true;
  flush = shutdown;
}

/** Whether this process records traces. */
export const tracingOn = (): boolean => on;

/**
 * Exports every span ended so far and stops the exporter, before `process.exit`: resolves at once
 * when off, and after at most `waitMs` when the collector does not answer (what was not sent is lost).
 */
export function flushTraces(waitMs = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    flush().catch(() => undefined),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs).unref())),
  ]).finally(() => clearTimeout(timer));
}

const tracer = () => trace.getTracer('tasks-api');

/** Whether the span current here is recorded (its trace sampled): work for a child span is wasted otherwise. */
export const recording = (): boolean => on && (trace.getActiveSpan()?.isRecording() ?? false);

/** Sets attributes on the span current here (a decision: rate limit, admission, idempotency); nothing when off. */
export function annotate(attributes: Attributes): void {
  if (on) trace.getActiveSpan()?.setAttributes(attributes);
}

/** Marks `span` failed with `error` (its message, never a stack with user data). */
export function failed(span: Span, error: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/**
 * `work` inside a span of its own, ended when `work` settles and marked failed if it throws: a
 * child of the current span, or of `options.parent`; `work` alone when tracing is off or the
 * current span is not recorded (its trace is not sampled: neither would this span be).
 */
export function inSpan<T>(
  name: string,
  attributes: Attributes,
  work: (span: Span | undefined) => Promise<T>,
  options: { parent?: Context; links?: Link[] } = {},
): Promise<T> {
  if (!on) return work(undefined);
  if (options.parent === undefined && trace.getActiveSpan()?.isRecording() === false) return work(undefined);
  return tracer().startActiveSpan(
    name,
    { attributes, links: options.links },
    options.parent ?? context.active(),
    async (span) => {
      try {
        return await work(span);
      } catch (error) {
        failed(span, error);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/** Starts a span (child of the current one) that the caller ends; undefined when tracing is off. */
export function startSpan(name: string, attributes?: Attributes): Span | undefined {
  return on ? tracer().startSpan(name, { attributes }) : undefined;
}

/** Runs `work` with `span` current (so the spans it starts are its children), or as it is without one. */
export function withSpan<T>(span: Span | undefined, work: () => T): T {
  return span === undefined ? work() : context.with(trace.setSpan(context.active(), span), work);
}

/** Runs `work` in `parent` (a context captured earlier), or as it is without one. */
export function inContext<T>(parent: Context | undefined, work: () => T): T {
  return parent === undefined ? work() : context.with(parent, work);
}

/** The current context when tracing is on (to come back to it later with inContext). */
export const currentContext = (): Context | undefined => (on ? context.active() : undefined);

/**
 * The W3C `traceparent` of the span current here, sampled or not (the version-00 form:
 * `00-<trace id>-<span id>-<flags>`), for work that carries it where no context reaches (the
 * webhook outbox); undefined when tracing is off or there is no span.
 */
export function currentTraceparent(): string | undefined {
  if (!on) return undefined;
  const span = trace.getActiveSpan()?.spanContext();
  if (span === undefined || !isSpanContextValid(span)) return undefined;
  return `00-${span.traceId}-${span.spanId}-0${span.traceFlags & TraceFlags.SAMPLED}`;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The span context a stored `traceparent` names (see currentTraceparent); undefined when it names none. */
export function spanContextOf(traceparent: string | null | undefined): SpanContext | undefined {
  const match = traceparent ? TRACEPARENT.exec(traceparent) : null;
  if (match === null) return undefined;
  const span: SpanContext = {
    traceId: match[1]!,
    spanId: match[2]!,
    traceFlags: parseInt(match[3]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  return isSpanContextValid(span) ? span : undefined;
}

/** A context whose parent is `span` (from spanContextOf), for a span that continues its trace. */
export const contextOf = (span: SpanContext): Context => trace.setSpanContext(ROOT_CONTEXT, span);

/** The trace and span ids of the span current here, for a log line; undefined when tracing is off or there is none. */
export function currentIds(): { trace_id: string; span_id: string } | undefined {
  if (!on) return undefined;
  const span = trace.getActiveSpan()?.spanContext();
  return span && isSpanContextValid(span) ? { trace_id: span.traceId, span_id: span.spanId } : undefined;
}
