// Reads a V8 CPU profile (.cpuprofile) of the API under load and says where the time went, by
// layer of the stack and by function.
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export const LAYERS = [
  'validator',
  'auth',
  'rate limit',
  'logging',
  'metrics',
  'security headers',
  'database',
  'handlers',
  'routing',
  'node http',
  'GC',
  'other',
] as const;
export type Layer = (typeof LAYERS)[number];

/** Which layer a frame's code belongs to, by where it lives; undefined for code shared by all (node internals). */
function layerOf({ functionName, url }: CallFrame): Layer | undefined {
  if (functionName === '(garbage collector)') return 'GC';
  if (/express-openapi-validator|\/ajv|ajv-formats|\/src\/http\/(openapi|formats)\./.test(url)) return 'validator';
  if (/\/jose\/|\/src\/auth\//.test(url)) return 'auth';
  if (/express-rate-limit|rate-limit-redis|\/src\/http\/rate-limit\./.test(url)) return 'rate limit';
  if (
    /winston|logform|sonic-boom|triple-beam|safe-stable-stringify|\/src\/logger\.|\/src\/http\/access-log\./.test(url)
  )
    return 'logging';
  if (/prom-client|\/src\/http\/metrics\./.test(url)) return 'metrics';
  if (/\/helmet\/|\/cors\//.test(url)) return 'security headers';
  if (/\/kysely\/|\/pg\/|\/pg-[a-z]+\/|postgres-array|postgres-date|\/src\/db\/|\.repository\./.test(url))
    return 'database';
  if (
    /\/src\/(tasks|users|attachments|idempotency)\/|\/src\/http\/(handler|etag|pagination|problem|error-handler)\./.test(
      url,
    )
  )
    return 'handlers';
  if (
    /\/express\/|\/router\/|path-to-regexp|body-parser|raw-body|finalhandler|\/qs\/|\/send\/|content-type|type-is|\/src\/http\/request-context\.|\/src\/app\./.test(
      url,
    )
  )
    return 'routing';
  if (/^node:_http|^node:net|^node:internal\/(http|stream_base)/.test(url)) return 'node http';
  return undefined;
}

export interface ProfileSummary {
  totalMs: number;
  /** Self time of each layer: a sample counts for the innermost frame of its stack that belongs to a layer. */
  layers: { layer: Layer; ms: number; share: number }[];
  /** Functions by inclusive time (each counted once per sample, however deep the recursion). */
  top: { frame: string; layer: Layer | 'none'; ms: number; share: number }[];
}

export function summarize(path: string, topN = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const frameName = ({ functionName, url, lineNumber }: CallFrame) =>
    `${functionName || '(anonymous)'} ${url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*?\/(src|dist|bench)\//, '$1/')}:${lineNumber + 1}`;

  const layerMs = new Map<Layer, number>();
  const inclusive = new Map<string, { ms: number; layer: Layer | 'none' }>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const leaf = byId.get(id)!;
    if (leaf.callFrame.functionName === '(idle)') return;
    total += ms;
    let layer: Layer | undefined;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)!.callFrame;
      if (frame.functionName === '(root)') break;
      layer ??= layerOf(frame);
      const name = frameName(frame);
      if (seen.has(name)) continue;
      seen.add(name);
      const entry = inclusive.get(name) ?? { ms: 0, layer: layerOf(frame) ?? 'none' };
      entry.ms += ms;
      inclusive.set(name, entry);
    }
    layer ??= 'other';
    layerMs.set(layer, (layerMs.get(layer) ?? 0) + ms);
  });
  const share = (ms: number) => Math.round((ms / total) * 1000) / 10;
  return {
    totalMs: Math.round(total),
    layers: LAYERS.map((layer) => ({
      layer,
      ms: Math.round(layerMs.get(layer) ?? 0),
      share: share(layerMs.get(layer) ?? 0),
    })).sort((a, b) => b.ms - a.ms),
    top: [...inclusive.entries()]
      .sort((a, b) => b[1].ms - a[1].ms)
      .slice(0, topN)
      .map(([frame, { ms, layer }]) => ({ frame, layer, ms: Math.round(ms), share: share(ms) })),
  };
}

/** The summary as text for the terminal. */
export function formatSummary(title: string, summary: ProfileSummary): string {
  return [
    `${title}: ${summary.totalMs} ms of CPU sampled (idle excluded)`,
    '  by layer (innermost frame of each sample that belongs to one):',
    ...summary.layers.map(({ layer, ms, share }) => `    ${layer.padEnd(17)} ${String(share).padStart(5)} %  ${ms} ms`),
    '  top functions, inclusive:',
    ...summary.top.map(({ frame, layer, share }) => `    ${String(share).padStart(5)} %  [${layer}] ${frame}`),
    '',
  ].join('\n');
}
