/**
 * OpenTelemetry tracing, loaded before the app with `node --import ./dist/src/telemetry/preload.js`
 * (what `npm start`, `npm run worker` and the image do). With no OTLP endpoint configured (the
 * default) it does nothing and loads nothing else: tracing off costs one small module.
 *
 * On (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set), it registers, before
 * the app's modules load:
 * - the Node SDK's tracer provider, its sampler from OTEL_TRACES_SAMPLER(_ARG) (default: every
 *   trace), spans batched to OTLP over HTTP with JSON bodies (OTEL_EXPORTER_OTLP_* for where,
 *   headers, timeout), the resource from OTEL_SERVICE_NAME (default `tasks-api`) and
 *   OTEL_RESOURCE_ATTRIBUTES;
 * - the W3C trace-context propagator, extracting an incoming `traceparent` only with
 *   TRACING_INCOMING_CONTEXT=continue, injecting one into every outgoing request (the webhooks);
 * - the official instrumentations of `http`/`https` (server spans, outgoing requests) and `pg`
 *   (a span per statement), through import-in-the-middle's ESM hook, limited to the modules they
 *   patch.
 * What no instrumentation covers is written by hand with the API (src/telemetry/tracing.ts): the
 * app's stages, token verification, the outbox's context and the delivery attempts.
 */
import { register } from 'node:module';
import { loadTracingConfig, type TracingConfig } from '../config.js';

const { tracing } = loadTracingConfig();
if (tracing.enabled) await startTracing(tracing);

async function startTracing({ incoming, serviceName }: TracingConfig): Promise<void> {
  const { createAddHookMessageChannel } = await import('import-in-the-middle');
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
  register('import-in-the-middle/hook.mjs', import.meta.url, registerOptions);

  const [api, core, sdk, base, exporter, resources, instrumentation, http, pg, tracingApi] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/instrumentation'),
    import('@opentelemetry/instrumentation-http'),
    import('@opentelemetry/instrumentation-pg'),
    import('./tracing.js'),
  ]);
  const { requestAttributes, routeOf, statementSummary } = await import('./names.js');

  const w3c = new core.W3CTraceContextPropagator();
  // Ignoring: nothing is extracted from a request, so each starts a trace of its own (and a
  // client cannot force its request sampled); injection into outgoing requests is unchanged.
  const propagator: typeof w3c =
    incoming === 'continue'
      ? w3c
      : Object.assign(Object.create(w3c) as typeof w3c, { extract: (context: unknown) => context });
  const provider = new sdk.NodeTracerProvider({
    resource: resources.defaultResource().merge(resources.resourceFromAttributes({ 'service.name': serviceName })),
    spanProcessors: [new base.BatchSpanProcessor(new exporter.OTLPTraceExporter())],
  });
  provider.register({ propagator });

  /** Probes and scrapes come every few seconds and say nothing about a request: no spans. */
  const UNTRACED = /^\/(health\/(live|ready)|metrics)(\?|$)/;
  instrumentation.registerInstrumentations({
    instrumentations: [
      new http.HttpInstrumentation({
        ignoreIncomingRequestHook: (request) => UNTRACED.test(request.url ?? ''),
        // Outgoing requests only inside a trace (a delivery attempt), never the SDK's own or a
        // background job's on their own.
        requireParentforOutgoingSpans: true,
        // Named by the contract's route template once the response is done (`GET
        // /api/v1/tasks/{taskId}`), never by the raw path; `GET` alone when no route matched.
        applyCustomAttributesOnSpan: (span, request, response) => {
          if (!('httpVersion' in request)) return; // an outgoing request (a webhook): named as it is
          const route = routeOf(request);
          span.updateName(route === undefined ? (request.method ?? 'GET') : `${request.method} ${route}`);
          span.setAttributes(requestAttributes(request, response as { getHeader?(name: string): unknown }));
        },
      }),
      new pg.PgInstrumentation({
        // pg-boss polls every few seconds: its statements are traced only within a trace.
        requireParentSpan: true,
        ignoreConnectSpans: true,
        // `SELECT tasks`, not the prepared statement's name (`tasks_api_12`): the SQL's verb and
        // table; the text (placeholders, never values) stays in `db.query.text`.
        requestHook: (span, { query }) => span.updateName(statementSummary(query.text)),
      }),
    ],
  });
  await waitForAllMessagesAcknowledged();
  tracingApi.tracingStarted(() => provider.shutdown());
  // The SDK's own errors (the collector refusing or not answering): one line on stderr a minute at
  // most, so a collector that is down does not flood the log with one line per batch.
  let quietUntil = 0;
  const error = (message: string) => {
    if (Date.now() < quietUntil) return;
    quietUntil = Date.now() + 60_000;
    process.stderr.write(`tracing: ${message} (repeats are not shown for a minute)\n`);
  };
  const ignore = () => undefined;
  api.diag.setLogger({ error, warn: ignore, info: ignore, debug: ignore, verbose: ignore }, api.DiagLogLevel.ERROR);
}
