// The practical limit of this stack on this machine: the same four endpoints as the API, the same
// SQL through the same pg pool size and the same jose HS256 verification (exp and sub required),
// on bare node:http with no framework, no validation beyond what the SQL needs, no logging, and
// every statement a named prepared statement (parsed and planned once per connection). npm run
// bench measures the API against it. Configured by DATABASE_URL, JWT_SECRET, PORT (HOST
// 127.0.0.1), DATABASE_POOL_MAX.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { jwtVerify } from 'jose';
import pg from 'pg';

const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.DATABASE_POOL_MAX ?? 10),
});
const secret = new TextEncoder().encode(process.env.JWT_SECRET);
const COLUMNS =
  'id, title, description, completed, priority, due_at, tags, created_at, updated_at, completed_at, version';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const iso = (d) => (d === null ? null : d.toISOString());
const toTask = (r) => ({
  id: r.id,
  title: r.title,
  description: r.description,
  completed: r.completed,
  priority: r.priority,
  due_at: iso(r.due_at),
  tags: r.tags,
  created_at: r.created_at.toISOString(),
  updated_at: r.updated_at.toISOString(),
  completed_at: iso(r.completed_at),
  version: r.version,
});

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'X-Request-Id': randomUUID(),
    ...headers,
  });
  res.end(text);
}

async function readJson(req) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 100 * 1024) throw Object.assign(new Error('too large'), { status: 413 });
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function handle(req, res) {
  const auth = req.headers.authorization ?? '';
  let sub;
  try {
    ({
      payload: { sub },
    } = await jwtVerify(auth.slice(7), secret, { algorithms: ['HS256'], requiredClaims: ['exp', 'sub'] }));
  } catch {
    return send(res, 401, { title: 'Invalid token' });
  }
  const url = new URL(req.url, 'http://x');
  const match = /^\/api\/v1\/tasks(?:\/([^/]+))?$/.exec(url.pathname);
  if (!match) return send(res, 404, { title: 'Not found' });
  const id = match[1];
  if (id === undefined && req.method === 'GET') {
    const limit = Math.min(100, Number(url.searchParams.get('limit') ?? 20));
    const { rows } = await pool.query({
      name: 'list',
      text: `select ${COLUMNS} from tasks where owner_id = $1 order by created_at desc, id desc limit $2`,
      values: [sub, limit + 1],
    });
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    const next =
      rows.length > limit
        ? Buffer.from(JSON.stringify({ k: last.created_at.toISOString(), i: last.id })).toString('base64url')
        : null;
    return send(
      res,
      200,
      { items: page.map(toTask), next_cursor: next },
      next ? { Link: `</api/v1/tasks?cursor=${next}>; rel="next"` } : {},
    );
  }
  if (id === undefined && req.method === 'POST') {
    const body = await readJson(req);
    if (typeof body.title !== 'string' || body.title.trim().length === 0 || body.title.length > 200)
      return send(res, 422, { title: 'Validation failed' });
    const { rows } = await pool.query({
      name: 'create',
      text: `insert into tasks (owner_id, title, description, priority, tags) values ($1, $2, $3, coalesce($4, 'medium'), coalesce($5::text[], '{}')) returning ${COLUMNS}`,
      values: [sub, body.title.trim(), body.description ?? null, body.priority ?? null, body.tags ?? null],
    });
    const task = toTask(rows[0]);
    return send(res, 201, task, { Location: `/api/v1/tasks/${task.id}`, ETag: `"${task.version}"` });
  }
  if (id === undefined || !UUID.test(id)) return send(res, 404, { title: 'Not found' });
  if (req.method === 'GET') {
    const { rows } = await pool.query({
      name: 'get',
      text: `select ${COLUMNS} from tasks where owner_id = $1 and id = $2`,
      values: [sub, id],
    });
    return rows[0]
      ? send(res, 200, toTask(rows[0]), { ETag: `"${rows[0].version}"` })
      : send(res, 404, { title: 'Task not found' });
  }
  if (req.method === 'PATCH') {
    const body = await readJson(req);
    const { rows } = await pool.query({
      name: 'update',
      text: `update tasks set title = coalesce($3, title), completed = coalesce($4, completed),
         completed_at = case when $4::boolean is null then completed_at when $4 then coalesce(completed_at, now()) else null end,
         updated_at = now(), version = version + 1
       where owner_id = $1 and id = $2 returning ${COLUMNS}`,
      values: [sub, id, body.title ?? null, body.completed ?? null],
    });
    return rows[0]
      ? send(res, 200, toTask(rows[0]), { ETag: `"${rows[0].version}"` })
      : send(res, 404, { title: 'Task not found' });
  }
  return send(res, 405, { title: 'Method not allowed' });
}

const server = createServer((req, res) => {
  handle(req, res).catch((error) => send(res, error.status ?? 500, { title: 'Error' }));
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
