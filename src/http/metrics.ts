import type { RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Database } from '../db/database.js';
import { currentIds, recording, tracingOn } from '../telemetry/tracing.js';

export interface Metrics {
  /** Times every request and counts those in flight. */
  middleware: RequestHandler;
  /** The Prometheus text exposition and its content type. */
  render(): Promise<{ contentType: string; body: string }>;
  /** The app's registry, where features register their own metrics. */
  registry: Registry;
}

/**
 * Prometheus metrics for one app, in a registry of its own (no global state): request durations
 * by method, route template (never the raw path, so ids cannot explode the label set) and status;
 * requests in flight; the database pool by state and the connections it discarded; Node.js
 * process metrics. With tracing on, the registry speaks OpenMetrics and each request's duration
 * carries its trace as an exemplar (`trace_id`, `span_id`), when the trace is sampled: from a
 * slow bucket on a dashboard to the trace of a request in it.
 */
export function createMetrics(database: Pick<Database, 'pool'>): Metrics {
  const exemplars = tracingOn();
  const registry = new Registry();
  if (exemplars) registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE as never);
  collectDefaultMetrics({ register: registry });
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from receiving a request to finishing its response.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
    enableExemplars: exemplars,
  });
  const inFlight = new Gauge({
    name: 'http_requests_in_flight',
    help: 'Requests being served right now, open change streams included (http_streams_open counts those).',
    registers: [registry],
  });
  new Gauge({
    name: 'db_pool_connections',
    help: 'Database pool connections by state (total, idle, waiting clients); absent for embedded PGlite.',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const { pool } = database;
      if (pool === undefined) return;
      this.set({ state: 'total' }, pool.totalCount);
      this.set({ state: 'idle' }, pool.idleCount);
      this.set({ state: 'waiting' }, pool.waitingCount);
    },
  });
  new Counter({
    name: 'db_connections_discarded_total',
    help: 'Pool connections destroyed instead of reused: after a failure other than a PostgreSQL error, with a reply outstanding, or inside a transaction.',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      const { pool } = database;
      if (pool === undefined) return;
      this.reset();
      for (const [reason, count] of Object.entries(pool.discarded)) this.inc({ reason }, count);
    },
  });

  return {
    middleware(req, res, next) {
      // The trace is taken now: by 'close' the request's span has ended.
      const end = exemplars
        ? duration.startTimer(undefined, ((recording() && currentIds()) || {}) as never)
        : duration.startTimer();
      inFlight.inc();
      res.once('close', () => {
        inFlight.dec();
        end({ method: req.method, route: req.openapi?.openApiRoute ?? 'unmatched', status: String(res.statusCode) });
      });
      next();
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
    registry,
  };
}
