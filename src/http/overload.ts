import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import type { RequestHandler } from 'express';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { OverloadLimits } from '../config.js';
import { HttpProblem } from '../errors/problem.js';
import { annotate, currentContext, inContext } from '../telemetry/tracing.js';

/** 503 problem+json with Retry-After for a request the server had no room for. */
export class Overloaded extends HttpProblem {
  constructor(
    readonly reason: 'queue_full' | 'queue_timeout' | 'event_loop_delay' | 'transfers_full' | 'streams_full',
    retryAfterSeconds: number,
  ) {
    const detail = {
      transfers_full: 'The server has as many uploads and downloads in progress as it takes',
      streams_full: 'The server has as many change streams open as it takes',
      queue_full: 'The server is at capacity and its queue is full',
      queue_timeout: 'The server is at capacity and the request waited too long for its turn',
      event_loop_delay: 'The server is too busy to take new requests',
    }[reason];
    super(503, 'OVERLOADED', 'Overloaded', `${detail}; retry after ${retryAfterSeconds} s.`, {
      headers: { 'Retry-After': String(retryAfterSeconds) },
    });
  }
}

export interface OverloadGuard {
  middleware: RequestHandler;
  /** Why the process should get no more traffic right now, or undefined when it has room. */
  saturated(): string | undefined;
  close(): void;
}

/**
 * The API's own paths, however a client spells them (the validator matches paths ignoring case):
 * only they wait or are shed; probes, metrics, the contract and the docs always answer.
 */
export const isApi = (path: string) => /^\/api\//i.test(path);
const SAMPLE_MS = 500;
const RESOLUTION_MS = 10;

/**
 * The mean event-loop delay since the last sample. The histogram holds the intervals between its
 * timer's ticks (the resolution plus the delay). A stall that began just as this sample fell due
 * can be missing from it: the sampler's timer can run before the histogram's, and `reset()` then
 * forgets the tick in progress, so that stall is never recorded (observed on Node 20: an 800 ms
 * block, then a window with no samples at all). The sampler's own lateness is then counted as the
 * sample the histogram lost.
 */
function meanDelayMs(delay: IntervalHistogram, samplerLateMs: number): number {
  const count = delay.count;
  let sumMs = count > 0 ? (delay.mean * count) / 1e6 : 0;
  let n = count;
  const lostMs = samplerLateMs + RESOLUTION_MS;
  if (samplerLateMs > RESOLUTION_MS && lostMs > (count > 0 ? delay.max / 1e6 : 0) + RESOLUTION_MS) {
    sumMs += lostMs;
    n += 1;
  }
  return n > 0 ? Math.max(0, sumMs / n - RESOLUTION_MS) : 0;
}

/**
 * Load shedding, the way Fastify's under-pressure and Envoy's overload manager do it, for the API's
 * operations. At most `maxInFlight` requests are past this point at once (so at most that many
 * validate, verify and hold or wait for a database connection, and memory stays bounded); the next
 * wait in a FIFO queue of at most `maxQueue`, each for at most `maxQueueWaitMs`, and are let in as
 * places free up while fewer than `maxPoolWaiting` clients wait for a database connection. Beyond
 * that — the queue full, a wait too long, or the event loop more than `maxEventLoopDelayMs` behind
 * (the process itself is saturated) — a request gets a 503 problem with Retry-After at once, which
 * costs next to nothing, instead of joining a queue it would time out in.
 *
 * No maintained Express package does this (overload-protection and toobusy-js are unmaintained
 * since 2019 and 2016; under-pressure is Fastify's), so it is built here on Node's own
 * `monitorEventLoopDelay`. `saturated()` tells readiness; the metrics count what was shed.
 */
export function overloadGuard(
  limits: OverloadLimits,
  deps: { poolWaiting: () => number; registry: Registry; retryAfterSeconds?: number },
): OverloadGuard {
  const retryAfter = deps.retryAfterSeconds ?? 1;
  const delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  delay.enable();
  let delayMs = 0;
  /** The smaller of the last two samples: one stall (a long GC, a burst of synchronous work) is not saturation. */
  let sustainedMs = 0;
  let sampledAt = performance.now();
  const sampler = setInterval(() => {
    const now = performance.now();
    const previous = delayMs;
    delayMs = meanDelayMs(delay, now - sampledAt - SAMPLE_MS);
    sampledAt = now;
    sustainedMs = Math.min(previous, delayMs);
    delay.reset();
    admitNext(); // in case the pool was busy with work of no admitted request when places freed up
  }, SAMPLE_MS).unref();

  let inFlight = 0;
  /** Waiting requests, oldest first; an entry is cancelled (undefined admit) when it times out or its client leaves. */
  const queue: { admit?: () => void }[] = [];
  let queued = 0;

  const shed = new Counter({
    name: 'http_requests_shed_total',
    help: 'Requests answered 503 by load shedding, by reason.',
    labelNames: ['reason'] as const,
    registers: [deps.registry],
  });
  new Gauge({
    name: 'http_requests_queued',
    help: 'API requests waiting for a place (load shedding queue).',
    registers: [deps.registry],
    collect() {
      this.set(queued);
    },
  });
  new Gauge({
    name: 'http_requests_admitted',
    help: 'API requests past the load-shedding gate right now.',
    registers: [deps.registry],
    collect() {
      this.set(inFlight);
    },
  });
  new Gauge({
    name: 'event_loop_delay_seconds',
    help: 'Mean event-loop delay over the last 500 ms, as load shedding sees it.',
    registers: [deps.registry],
    collect() {
      this.set(delayMs / 1000);
    },
  });

  const release = () => {
    inFlight -= 1;
    admitNext();
  };
  function admitNext(): void {
    while (queue.length > 0 && inFlight < limits.maxInFlight && deps.poolWaiting() < limits.maxPoolWaiting) {
      const next = queue.shift()!;
      if (next.admit === undefined) continue;
      queued -= 1;
      next.admit();
    }
    if (queued === 0) queue.length = 0; // only cancelled entries left
  }

  const middleware: RequestHandler = (req, res, next) => {
    if (!isApi(req.path)) return next();
    // The client left while its request was verified or read: nothing to do, and no place to
    // take (its 'close' has come already, so a place taken now would never be given back).
    if (res.destroyed) return;
    const refuse = (reason: Overloaded['reason']) => {
      shed.inc({ reason });
      annotate({ 'tasks_api.admission': 'shed', 'tasks_api.shed_reason': reason });
      next(new Overloaded(reason, retryAfter));
    };
    if (sustainedMs > limits.maxEventLoopDelayMs) return refuse('event_loop_delay');
    const admit = () => {
      inFlight += 1;
      // The place is for the work: it is given back once the answer is written (prefinish), not
      // when a client that reads slowly has taken it all (close), which the client decides.
      let held = true;
      const done = () => {
        if (!held) return;
        held = false;
        res.off('prefinish', done);
        res.off('close', done);
        release();
      };
      res.once('prefinish', done);
      res.once('close', done);
      next();
    };
    if (queued === 0 && inFlight < limits.maxInFlight && deps.poolWaiting() < limits.maxPoolWaiting) {
      annotate({ 'tasks_api.admission': 'immediate' });
      return admit();
    }
    if (queued >= limits.maxQueue) return refuse('queue_full');
    const entry: { admit?: () => void } = {};
    // Admitted later from another request's release: its work continues in its own trace.
    const context = currentContext();
    const since = performance.now();
    const leave = () => {
      entry.admit = undefined;
      queued -= 1;
      clearTimeout(timer);
      res.off('close', gone);
    };
    const timer = setTimeout(() => {
      leave();
      refuse('queue_timeout');
    }, limits.maxQueueWaitMs);
    const gone = () => leave(); // the client left while waiting: its place goes to the next
    entry.admit = () =>
      inContext(context, () => {
        clearTimeout(timer);
        res.off('close', gone);
        annotate({ 'tasks_api.admission': 'queued', 'tasks_api.queue_wait_ms': Math.round(performance.now() - since) });
        admit();
      });
    res.once('close', gone);
    queue.push(entry);
    queued += 1;
  };

  return {
    middleware,
    saturated(): string | undefined {
      if (sustainedMs > limits.maxEventLoopDelayMs) return `the event loop is ${Math.round(sustainedMs)} ms behind`;
      if (queued >= limits.maxQueue) return 'the request queue is full';
      return undefined;
    },
    close(): void {
      clearInterval(sampler);
      delay.disable();
    },
  };
}
