// The breaking-change gate (scripts/contract-diff.mjs, `npm run contract:diff` in CI) run as CI
// runs it, on the released v1 contract and deliberately changed copies of it written to a temp
// dir: each kind of breaking change fails it and is named under "Breaking"; additive changes pass.
// No network, no server: two JSON files per case, most of them run through the command's own
// function in this process, and the command itself in a process of its own for its exit codes.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runGate } from '../../scripts/contract-diff.mjs';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const script = join(root, 'scripts', 'contract-diff.mjs');
const releasedFile = join(root, 'openapi', 'released', 'v1.json');

// a parsed OpenAPI document, changed freely by the cases
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the cases reach into and rewrite any part of it
type Doc = any;
let dir: string;
let released: Doc;
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'contract-gate-'));
  released = JSON.parse(readFileSync(releasedFile, 'utf8'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Runs the gate on the released contract changed by `change`: its exit code and its sections. In
 * this process (the command's own function, runGate) unless `asCommand`: then as CI runs it, `node
 * scripts/contract-diff.mjs` in a process of its own (0.8 s of CPU each, most of it loading).
 */
async function gate(change: (doc: Doc) => void, extra: string[] = [], { asCommand = false } = {}) {
  const head = structuredClone(released);
  change(head);
  const file = join(dir, `head-${++n}.json`);
  writeFileSync(file, JSON.stringify(head));
  const argv = ['--base', releasedFile, '--head', file, ...extra];
  let code = 0;
  let stdout = '';
  let stderr = '';
  if (asCommand) {
    try {
      ({ stdout, stderr } = await run(process.execPath, [script, ...argv], { cwd: root }));
    } catch (error) {
      const e = error as { code: number; stdout: string; stderr: string };
      ({ code, stdout, stderr } = e);
    }
  } else {
    code = await runGate(argv, { log: (line) => (stdout += `${line}\n`), error: (line) => (stderr += `${line}\n`) });
  }
  const sections: Record<string, string> = {};
  for (const part of stdout.split(/^### /m).slice(1)) {
    const title = part.slice(0, part.indexOf(' ('));
    sections[title] = part;
  }
  return {
    code,
    stdout,
    stderr,
    breaking: sections.Breaking ?? '',
    nonBreaking: sections['Non-breaking'] ?? '',
    accepted: sections['Flagged breaking, accepted after review'] ?? '',
  };
}

/** The line of `section` that names change `text`, which must list operation `op` (one line per change, with every operation it is in). */
function line(section: string, op: string, text: string) {
  return (
    section.split('\n').find((l) => l.includes(text) && l.includes(`\`${op}\``)) ??
    `no line names ${op}: ${text} in:\n${section}`
  );
}

const schemas = (doc: Doc) => doc.components.schemas;
const listTasks = (doc: Doc) => doc.paths['/api/v1/tasks'].get;
const createTask = (doc: Doc) => doc.paths['/api/v1/tasks'].post;

describe('breaking-change gate: each kind of breaking change fails it, named', () => {
  it.each<[string, (doc: Doc) => void, [string, string]]>([
    ['a removed operation', (d) => delete d.paths['/api/v1/tags'], ['GET /api/v1/tags', 'operation removed']],
    [
      'a removed response field',
      (d) => {
        delete schemas(d).Task.properties.version;
        schemas(d).Task.required = schemas(d).Task.required.filter((f: string) => f !== 'version');
      },
      ['GET /api/v1/tasks/{taskId}', 'response 200 (application/json): property `version` removed'],
    ],
    [
      'a narrowed enum (query parameter)',
      (d) => {
        listTasks(d).parameters.find((p: Doc) => p.name === 'status').schema.enum = ['pending', 'completed'];
      },
      ['GET /api/v1/tasks', 'query parameter `status`: enum value "all" removed'],
    ],
    [
      'a narrowed enum (request body)',
      (d) => {
        schemas(d).Priority.enum = ['medium', 'high'];
      },
      ['POST /api/v1/tasks', 'request body (application/json): enum value "low" of `priority` removed'],
    ],
    [
      'a new required request field',
      (d) => schemas(d).TaskCreate.required.push('priority'),
      ['POST /api/v1/tasks', 'request body (application/json): `priority` now required'],
    ],
    [
      'a new required query parameter',
      (d) =>
        listTasks(d).parameters.push({
          name: 'owner',
          in: 'query',
          required: true,
          schema: { type: 'string', maxLength: 10 },
        }),
      ['GET /api/v1/tasks', 'required query parameter `owner` added'],
    ],
    [
      'a removed status code',
      (d) => delete createTask(d).responses['409'],
      ['POST /api/v1/tasks', 'response 409 removed'],
    ],
    [
      'a field removed from a closed request body (clients still sending it get 422)',
      (d) => delete schemas(d).TaskCreate.properties.tags,
      ['POST /api/v1/tasks', 'request body (application/json): property `tags` removed'],
    ],
    [
      'a response field whose type changed',
      (d) => {
        schemas(d).Task.properties.completed = { type: 'string', maxLength: 5 };
      },
      ['GET /api/v1/tasks/{taskId}', 'response 200 (application/json): type of `completed`: "boolean" → "string"'],
    ],
    [
      'a request field whose type narrowed',
      (d) => {
        schemas(d).TaskCreate.properties.description = { type: 'string', maxLength: 1000 };
      },
      ['POST /api/v1/tasks', 'request body (application/json): type of `description`: ["string","null"] → "string"'],
    ],
    [
      'a scope added to an operation',
      (d) => {
        listTasks(d).security = [{ bearerAuth: ['tasks:read', 'tasks:write'] }];
      },
      ['GET /api/v1/tasks', 'security scope "tasks:write" added'],
    ],
    ['a removed webhook event', (d) => delete d.webhooks['task.due'], ['webhook task.due', 'event removed']],
    [
      'a field removed from a webhook payload',
      (d) => {
        delete schemas(d).WebhookTaskEvent.properties.timestamp;
        schemas(d).WebhookTaskEvent.required = schemas(d).WebhookTaskEvent.required.filter(
          (f: string) => f !== 'timestamp',
        );
      },
      ['webhook task.created', 'payload (application/json): property `timestamp` removed'],
    ],
  ])('%s', async (_kind, change, [op, text]) => {
    const result = await gate(change);
    expect(result.code).toBe(1);
    expect(line(result.breaking, op, text)).toMatch(/^- /);
    expect(result.stderr).toMatch(/breaking change\(s\) against the released v1 contract \(1\.0\.0\)/);
  });
});

describe('breaking-change gate: what does not break a client passes', () => {
  it('new optional request and response fields, a new operation and a new webhook event: exit 0, listed as non-breaking', async () => {
    const result = await gate((d) => {
      schemas(d).TaskCreate.properties.color = { type: 'string', maxLength: 7 };
      schemas(d).Task.properties.color = { type: 'string', maxLength: 7 };
      d.paths['/api/v1/tags/{tag}'] = {
        get: {
          ...structuredClone(d.paths['/api/v1/tags'].get),
          operationId: 'getTag',
          parameters: [{ name: 'tag', in: 'path', required: true, schema: { type: 'string', maxLength: 32 } }],
        },
      };
      d.webhooks['task.archived'] = structuredClone(d.webhooks['task.due']);
      d.webhooks['task.archived'].post.operationId = 'taskArchivedEvent';
    });
    expect({ code: result.code, breaking: result.breaking }).toEqual({ code: 0, breaking: '' });
    expect(result.nonBreaking).toContain(
      '- `POST /api/v1/tasks`: request body (application/json): property `color` added',
    );
    expect(result.nonBreaking).toContain('- `GET /api/v1/tags/{tag}`: operation added');
    expect(result.nonBreaking).toContain('- `webhook task.archived`: event added');
    expect(
      line(result.nonBreaking, 'webhook task.created', 'payload (application/json): property `data.color` added'),
    ).toMatch(/^- /);
    expect(
      line(result.nonBreaking, 'GET /api/v1/tasks/{taskId}', 'response 200 (application/json): property `color` added'),
    ).toMatch(/^- /);
  });

  it('a request type widened, a response narrowed (a const, a field made required) and docs: exit 0', async () => {
    const result = await gate((d) => {
      schemas(d).TaskCreate.properties.completed = { type: ['boolean', 'null'], default: false };
      schemas(d).Problem.properties.status.const = 404;
      schemas(d).Problem.required = [...new Set([...schemas(d).Problem.required, 'instance'])];
      listTasks(d).summary += ' (reworded)';
      listTasks(d).parameters.find((p: Doc) => p.name === 'status').example = 'completed';
    });
    expect({ code: result.code, breaking: result.breaking }).toEqual({ code: 0, breaking: '' });
    expect(result.nonBreaking).toContain(
      'request body (application/json): type of `completed`: "boolean" → ["boolean","null"]',
    );
    expect(result.nonBreaking).toContain('const of `status` added (404)');
    expect(result.nonBreaking).toContain('`instance` now required');
    expect(result.stdout).toMatch(/### Docs \(\d+\)[\s\S]*`GET \/api\/v1\/tasks`: example, summary/);
    expect(result.stdout).not.toContain('Unclassified');
  });

  it('a breaking change with info.version’s major bumped is allowed (exit 0), still listed as breaking', async () => {
    const result = await gate((d) => {
      d.info.version = '2.0.0';
      delete d.paths['/api/v1/tags'];
    });
    expect(result.code).toBe(0);
    expect(result.breaking).toContain('- `GET /api/v1/tags`: operation removed');
    expect(result.stderr).toContain('allowed: info.version 2.0.0 is a new major over 1.0.0');
  });

  it('a breaking flag a person accepted (named, with a reason, in the accepted file) passes, listed apart', async () => {
    const accepted = join(dir, 'accepted.json');
    const change = 'request body (application/json): default of `completed` removed (was false)';
    writeFileSync(
      accepted,
      JSON.stringify({
        accepted: [
          { operation: 'POST /api/v1/tasks', change, reason: 'the server still applies false' },
          { operation: 'GET /api/v1/tags', change: 'operation removed', reason: 'stale entry' },
        ],
      }),
    );
    const result = await gate(
      (d) => delete schemas(d).TaskCreate.properties.completed.default,
      ['--accepted', accepted],
    );
    expect({ code: result.code, breaking: result.breaking }).toEqual({ code: 0, breaking: '' });
    expect(result.accepted).toContain(`\`POST /api/v1/tasks\`: ${change} — the server still applies false`);
    expect(result.stderr).toContain('accepts a change the diff no longer shows: GET /api/v1/tags: operation removed');
    // without it, the same change fails the gate
    const unaccepted = await gate((d) => delete schemas(d).TaskCreate.properties.completed.default);
    expect(unaccepted.code).toBe(1);
    expect(unaccepted.breaking).toContain(`- \`POST /api/v1/tasks\`: ${change}`);
  });
});

describe('breaking-change gate as the command CI runs (node scripts/contract-diff.mjs)', () => {
  it('the released contract against itself: exit 0, "No changes." on stdout, nothing on stderr', async () => {
    const result = await gate(() => {}, [], { asCommand: true });
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
    expect(result.stdout).toContain('No changes.');
  });

  it('a breaking change: exit 1, the change under "Breaking" and why on stderr', async () => {
    const result = await gate((d) => delete d.paths['/api/v1/tags'], [], { asCommand: true });
    expect(result.code).toBe(1);
    expect(line(result.breaking, 'GET /api/v1/tags', 'operation removed')).toMatch(/^- /);
    expect(result.stderr).toMatch(/1 breaking change\(s\) against the released v1 contract \(1\.0\.0\)/);
  });

  it('an unknown argument: exit 2, the usage on stderr', async () => {
    const result = await gate(() => {}, ['--nonsense'], { asCommand: true });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('unknown argument --nonsense; usage: contract-diff');
  });
});
