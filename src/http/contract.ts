import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The parts of an OpenAPI document this code reads. */
export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; [key: string]: unknown };
  paths: Record<string, Record<string, unknown>>;
  [key: string]: unknown;
}

/**
 * The bundled contract (parsed, and as YAML text) and where its rendered reference page is, as
 * `npm run generate` wrote them. The page (~2.7 MB) is read on its first request, not at start:
 * most processes never serve it.
 */
export interface Contract {
  spec: OpenApiDocument;
  specYaml: string;
  docsPath: string;
}

/** The checkout's root: the nearest folder above this file holding package.json (works from src/ and dist/). */
export function projectRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from;
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${from}`);
    dir = parent;
  }
  return dir;
}

export function loadContract(root = projectRoot()): Contract {
  const generated = join(root, 'generated');
  return {
    spec: JSON.parse(readFileSync(join(generated, 'openapi.json'), 'utf8')) as OpenApiDocument,
    specYaml: readFileSync(join(generated, 'openapi.yaml'), 'utf8'),
    docsPath: join(generated, 'docs.html'),
  };
}

/** The operationIds the contract declares. */
export function operationIdsOf(spec: OpenApiDocument): string[] {
  return Object.values(spec.paths).flatMap((item) =>
    Object.values(item).flatMap((op) =>
      op && typeof op === 'object' && 'operationId' in op && typeof op.operationId === 'string' ? [op.operationId] : [],
    ),
  );
}

/**
 * Each `pattern` of the contract with the words it gives beside it (`x-pattern-description`), so
 * that a value breaking it is told what is expected rather than shown a regular expression.
 */
export function patternWordsOf(spec: OpenApiDocument): Map<string, string> {
  const words = new Map<string, string>();
  const visit = (node: unknown): void => {
    if (node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) return node.forEach(visit);
    const record = node as Record<string, unknown>;
    const { pattern, 'x-pattern-description': said } = record;
    if (typeof pattern === 'string' && typeof said === 'string') words.set(pattern, said);
    Object.values(record).forEach(visit);
  };
  visit(spec);
  return words;
}
