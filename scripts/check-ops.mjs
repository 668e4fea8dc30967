#!/usr/bin/env node
// The operator files of ops/ against promtool and against what the API really exports:
//
// 1. `promtool check rules` on ops/prometheus/alerts.yml and `promtool test rules` on
//    ops/prometheus/alerts.test.yml (promtool: Debian's `prometheus` package);
// 2. the rules' shape: every alert has `for`, a severity label, a summary and a description;
//    every dashboard query uses the ${DS_PROMETHEUS} input;
// 3. a development server from src/ (tsx) on a free port, on in-memory PGlite, with a
//    METRICS_TOKEN, driven so that labelled series exist (tasks, a 404, an attachment up and
//    down and one refused, a webhook delivered to a receiver on loopback, a request refused at
//    CONCURRENCY_PER_USER while another is held open), then its GET /metrics;
// 4. every metric named by a rule's expr or a dashboard query (panels and variables) is exported
//    (a histogram through _bucket/_sum/_count), and every label a query matches on, aggregates by
//    (by/without/on/ignoring/group_left/group_right), or prints ($labels.x in annotations, {{x}}
//    in legends) exists where it is used. job and instance are the scrape's target labels; `up`
//    is Prometheus's own; names defined by a `record:` rule are known with the labels their
//    expression keeps. A metric that /metrics declares (# TYPE) but has no sample of in this
//    run has its labels read from its declaration in src/ (`labelNames`).
//
//   node scripts/check-ops.mjs [OPS_DIR]      (default: ops/ of this repository)
//
// Exit 1 with one line per problem.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { SignJWT } from 'jose';

const repo = resolve(fileURLToPath(new URL('..', import.meta.url)));
const opsDir = resolve(process.argv[2] ?? join(repo, 'ops'));
const rulesFile = join(opsDir, 'prometheus', 'alerts.yml');
const rulesTestFile = join(opsDir, 'prometheus', 'alerts.test.yml');
const dashboardFile = join(opsDir, 'grafana', 'tasks-api.json');

const problems = [];
const problem = (line) => problems.push(line);
const say = (line) => process.stdout.write(`check-ops: ${line}\n`);
const shown = (file) => relative(process.cwd(), file) || file;

// ---------------------------------------------------------------- 1. promtool

function promtool() {
  const version = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (version.error !== undefined) {
    process.stderr.write(
      "check-ops: promtool not found: install Debian's prometheus package (apt-get install --no-install-recommends prometheus), which provides it\n",
    );
    process.exit(1);
  }
  say(`promtool ${version.stdout.split('\n')[0].replace(/^promtool, version /, '')}`);
  for (const args of [
    ['check', 'rules', rulesFile],
    ['test', 'rules', rulesTestFile],
  ]) {
    const run = spawnSync('promtool', args, { encoding: 'utf8' });
    const output = `${run.stdout}${run.stderr}`.trim();
    process.stdout.write(`$ promtool ${args.slice(0, 2).join(' ')} ${shown(args[2])}\n${output}\n`);
    if (run.status !== 0)
      problem(`promtool ${args.slice(0, 2).join(' ')} ${shown(args[2])} failed (its output is above)`);
  }
}

// ---------------------------------------------------------------- PromQL, just enough of it

/** Whitespace-separated words, as a Set. */
const words = (text) => new Set(text.trim().split(/\s+/));
const AGGREGATIONS = words(`
  sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
`);
// PromQL's functions, and (last four) Grafana's Prometheus variable queries
const FUNCTIONS = words(`
  abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max
  clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv exp
  floor histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
  histogram_sum holt_winters double_exponential_smoothing hour idelta increase irate label_join label_replace
  last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi predict_linear
  present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_desc sort_by_label
  sort_by_label_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year
  label_values label_names metrics query_result
`);
const SCALAR_FUNCTIONS = words(`
  pi time scalar day_of_month day_of_week day_of_year days_in_month hour minute month year
`);
const SET_OPS = words('and or unless');
const BINARY_OPS = words('+ - * / % ^ == != > < >= <= and or unless atan2');
const TARGET_LABELS = ['job', 'instance'];
/** Series Prometheus writes itself for every target. */
const SYNTHETIC = words(`
  up scrape_duration_seconds scrape_samples_scraped scrape_samples_post_metric_relabeling scrape_series_added
`);

function tokenize(text) {
  const pattern =
    /\s+|#[^\n]*|"((?:\\.|[^"\\])*)"|'((?:\\.|[^'\\])*)'|`([^`]*)`|(\d*\.?\d+(?:e[+-]?\d+)?(?:(?:ms|[smhdwy])\d*)*|0x[0-9a-f]+|Inf|NaN)(?![a-zA-Z_:])|([a-zA-Z_:][a-zA-Z0-9_:]*)|(=~|!~|!=|==|>=|<=|[{}()[\],=<>+\-*/%^@:])/gy;
  const tokens = [];
  let match;
  while (pattern.lastIndex < text.length && (match = pattern.exec(text)) !== null) {
    const [all, dq, sq, bq, number, ident, punct] = match;
    if (dq !== undefined || sq !== undefined || bq !== undefined) tokens.push({ t: 'str', v: dq ?? sq ?? bq });
    else if (number !== undefined) tokens.push({ t: 'num', v: number });
    else if (ident !== undefined) tokens.push({ t: 'id', v: ident });
    else if (punct !== undefined) tokens.push({ t: 'p', v: punct });
    else if (all.trim() !== '' && !all.startsWith('#')) throw new Error(`cannot read "${all}"`);
  }
  if (pattern.lastIndex < text.length)
    throw new Error(`cannot read from "${text.slice(pattern.lastIndex, pattern.lastIndex + 20)}"`);
  return tokens;
}

/**
 * Parses a PromQL expression into a small tree: { kind: 'selector' | 'agg' | 'call' | 'binary' |
 * 'number' | 'string' | 'paren', ... }. Binary operators are read left to right, without
 * precedence: what the checks need is which labels each part offers, not the value.
 */
function parse(text) {
  const tokens = tokenize(text);
  let i = 0;
  const peek = (offset = 0) => tokens[i + offset];
  const is = (v, offset = 0) => peek(offset) !== undefined && peek(offset).t !== 'str' && peek(offset).v === v;
  const expect = (v) => {
    if (!is(v)) throw new Error(`expected "${v}" at ${peek() ? `"${peek().v}"` : 'the end'}`);
    i += 1;
  };
  const labelList = () => {
    expect('(');
    const labels = [];
    while (!is(')')) {
      const token = tokens[i++];
      if (token === undefined) throw new Error('unclosed label list');
      if (token.t === 'id') labels.push(token.v);
      else if (!is(',', -1)) throw new Error(`unexpected "${token.v}" in a label list`);
    }
    expect(')');
    return labels;
  };
  const matchers = () => {
    expect('{');
    const list = [];
    while (!is('}')) {
      const label = tokens[i++];
      const op = tokens[i++];
      const value = tokens[i++];
      if (label?.t !== 'id' || op?.t !== 'p' || value?.t !== 'str')
        throw new Error('a label matcher is not label op "value"');
      list.push({ label: label.v, op: op.v, value: value.v });
      if (is(',')) i += 1;
    }
    expect('}');
    return list;
  };
  const postfix = (node) => {
    for (;;) {
      if (is('[')) {
        while (!is(']')) if (tokens[i++] === undefined) throw new Error('unclosed [');
        i += 1;
        node.range = true;
      } else if (is('offset') || is('@')) {
        i += 1;
        if (is('-')) i += 1;
        i += is('start') || is('end') ? 3 : 1; // start() / end() or a duration or a timestamp
      } else return node;
    }
  };
  const primary = () => {
    const token = peek();
    if (token === undefined) throw new Error('unexpected end');
    if (token.t === 'num') return (i++, { kind: 'number' });
    if (token.t === 'str') return (i++, { kind: 'string', value: token.v });
    if (is('-') || is('+')) return (i++, primary());
    if (is('(')) {
      i += 1;
      const inner = expression();
      expect(')');
      return postfix({ kind: 'paren', inner });
    }
    if (is('{')) {
      const list = matchers();
      const name = list.find((m) => m.label === '__name__' && m.op === '=')?.value;
      return postfix({ kind: 'selector', name, matchers: list.filter((m) => m.label !== '__name__') });
    }
    if (token.t !== 'id') throw new Error(`unexpected "${token.v}"`);
    i += 1;
    if (AGGREGATIONS.has(token.v) && (is('(') || is('by') || is('without'))) {
      let grouping;
      if (is('by') || is('without')) grouping = { how: tokens[i++].v, labels: labelList() };
      expect('(');
      const args = [expression()];
      while (is(',')) (i++, args.push(expression()));
      expect(')');
      if (is('by') || is('without')) grouping = { how: tokens[i++].v, labels: labelList() };
      return { kind: 'agg', op: token.v, grouping, arg: args[args.length - 1], params: args.slice(0, -1) };
    }
    if (is('(')) {
      if (!FUNCTIONS.has(token.v)) throw new Error(`${token.v}() is not a PromQL function`);
      i += 1;
      const args = [];
      while (!is(')')) {
        args.push(expression());
        if (is(',')) i += 1;
        else if (!is(')')) throw new Error(`expected "," or ")" in ${token.v}()`);
      }
      i += 1;
      return postfix({ kind: 'call', fn: token.v, args });
    }
    const node = { kind: 'selector', name: token.v, matchers: [] };
    if (is('{')) node.matchers = matchers();
    return postfix(node);
  };
  const expression = () => {
    let left = primary();
    for (;;) {
      const token = peek();
      if (token === undefined || token.t === 'str' || !BINARY_OPS.has(token.v)) return left;
      i += 1;
      const node = { kind: 'binary', op: token.v, left };
      if (is('bool')) (i++, (node.bool = true));
      if (is('on') || is('ignoring')) node.matching = { how: tokens[i++].v, labels: labelList() };
      if (is('group_left') || is('group_right')) {
        node.group = { how: tokens[i++].v, labels: is('(') ? labelList() : [] };
      }
      node.right = primary();
      left = node;
    }
  };
  const tree = expression();
  if (i < tokens.length) throw new Error(`unexpected "${tokens[i].v}"`);
  return tree;
}

const ANY = null; // labels not known: no check
const union = (...sets) => (sets.some((s) => s === ANY) ? ANY : new Set(sets.flatMap((s) => [...s])));

/**
 * Walks a parsed expression: reports each metric name (through `onMetric`) and each label used
 * where it is not offered (through `onLabel`), and returns the labels of its result (a Set, ANY
 * when unknown, or 'scalar').
 */
function analyse(node, env) {
  const labelsOf = (n) => analyse(n, env);
  const need = (label, offered, where) => {
    if (offered === ANY || offered === 'scalar' || label === '__name__' || offered.has(label)) return;
    env.onLabel(label, where, offered);
  };
  switch (node.kind) {
    case 'number':
      return 'scalar';
    case 'string':
      return 'scalar';
    case 'paren':
      return labelsOf(node.inner);
    case 'selector': {
      if (node.name === undefined) return ANY;
      const offered = env.onMetric(node.name);
      for (const m of node.matchers) need(m.label, offered, `${node.name}{${m.label}${m.op}"${m.value}"}`);
      return offered;
    }
    case 'agg': {
      node.params.forEach(labelsOf);
      const inner = labelsOf(node.arg);
      if (node.grouping === undefined) return new Set(node.op === 'count_values' ? [node.params[0]?.value] : []);
      for (const label of node.grouping.labels) need(label, inner, `${node.op} ${node.grouping.how} (${label})`);
      if (node.grouping.how === 'by') return new Set(node.grouping.labels);
      return inner === ANY ? ANY : new Set([...inner].filter((l) => !node.grouping.labels.includes(l)));
    }
    case 'call': {
      if (node.fn === 'label_values' && node.args.length === 2) {
        // label_values(metric, label), Grafana's: the second argument names a label, not a metric
        const label = node.args[1];
        if (label.kind === 'selector' && label.name !== undefined && label.matchers.length === 0)
          need(label.name, labelsOf(node.args[0]), `label_values(…, ${label.name})`);
        return ANY;
      }
      const args = node.args.map(labelsOf);
      if (SCALAR_FUNCTIONS.has(node.fn)) return 'scalar';
      if (node.fn === 'vector') return new Set();
      if (node.fn === 'absent' || node.fn === 'absent_over_time') {
        const selector = node.args[0];
        return new Set(
          selector?.kind === 'selector' ? selector.matchers.filter((m) => m.op === '=').map((m) => m.label) : [],
        );
      }
      const vector = args.find((a) => a !== 'scalar') ?? 'scalar';
      if (node.fn === 'histogram_quantile' || node.fn === 'histogram_fraction') {
        if (vector !== ANY && vector !== 'scalar') need('le', vector, `${node.fn}(…)`);
        return vector === ANY || vector === 'scalar' ? vector : new Set([...vector].filter((l) => l !== 'le'));
      }
      if (node.fn === 'label_replace' || node.fn === 'label_join') {
        const dst = node.args[1]?.value;
        return vector === ANY || vector === 'scalar' ? vector : union(vector, new Set([dst]));
      }
      return vector;
    }
    case 'binary': {
      const left = labelsOf(node.left);
      const right = labelsOf(node.right);
      if (left === 'scalar') return right;
      if (right === 'scalar') return left;
      for (const label of node.matching?.labels ?? []) {
        const where = `${node.matching.how} (${label})`;
        if (node.matching.how === 'on') (need(label, left, where), need(label, right, where));
        else if (left !== ANY && right !== ANY && !left.has(label) && !right.has(label))
          env.onLabel(label, where, union(left, right));
      }
      if (node.group) {
        const [many, one] = node.group.how === 'group_left' ? [left, right] : [right, left];
        for (const label of node.group.labels) need(label, one, `${node.group.how} (${label})`);
        return many === ANY ? ANY : union(many, new Set(node.group.labels));
      }
      if (SET_OPS.has(node.op)) return left;
      if (node.matching?.how === 'on') return new Set(node.matching.labels);
      if (node.matching?.how === 'ignoring' && left !== ANY)
        return new Set([...left].filter((l) => !node.matching.labels.includes(l)));
      return left;
    }
    default:
      throw new Error(`unknown node ${node.kind}`);
  }
}

// ---------------------------------------------------------------- what the files use

function rulesAndDashboard() {
  const uses = []; // { where, expr, printed: [labels printed from the result], recordAs }
  let groups = [];
  try {
    groups = yaml.load(readFileSync(rulesFile, 'utf8'))?.groups ?? [];
  } catch (error) {
    problem(`${shown(rulesFile)}: ${error.message.split('\n')[0]}`);
  }
  for (const group of groups) {
    for (const rule of group.rules ?? []) {
      const name = rule.alert ?? rule.record;
      const where = `${shown(rulesFile)} ${rule.alert ? 'alert' : 'record'} ${name}`;
      const printed = [];
      if (rule.alert !== undefined) {
        if (rule.for === undefined) problem(`${where}: no "for" (how long the condition must hold)`);
        if (!['critical', 'warning', 'info'].includes(rule.labels?.severity))
          problem(
            `${where}: labels.severity must be critical, warning or info (got ${JSON.stringify(rule.labels?.severity)})`,
          );
        for (const key of ['summary', 'description'])
          if (!rule.annotations?.[key]?.trim()) problem(`${where}: no ${key} annotation`);
        for (const text of Object.values({ ...rule.annotations, ...rule.labels }))
          for (const [, label] of String(text).matchAll(/\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)/g)) printed.push(label);
      }
      uses.push({ where, expr: String(rule.expr ?? ''), printed, recordAs: rule.record });
    }
  }

  let dashboard = {};
  try {
    dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8'));
  } catch (error) {
    problem(`${shown(dashboardFile)}: ${error.message}`);
  }
  if (!(dashboard.__inputs ?? []).some((input) => input.name === 'DS_PROMETHEUS' && input.pluginId === 'prometheus'))
    problem(`${shown(dashboardFile)}: no __inputs entry DS_PROMETHEUS (pluginId prometheus)`);
  const variables = {};
  for (const variable of dashboard.templating?.list ?? []) {
    variables[variable.name] = variable.includeAll || variable.multi ? '.*' : (variable.current?.value ?? 'x');
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    if (variable.type === 'query' && query)
      uses.push({ where: `${shown(dashboardFile)} variable $${variable.name}`, expr: query, printed: [] });
  }
  const panels = (list) => list.flatMap((p) => [p, ...panels(p.panels ?? [])]);
  const ids = new Set();
  for (const panel of panels(dashboard.panels ?? [])) {
    if (ids.has(panel.id)) problem(`${shown(dashboardFile)}: panel id ${panel.id} twice`);
    ids.add(panel.id);
    for (const target of panel.targets ?? []) {
      const where = `${shown(dashboardFile)} panel "${panel.title}" target ${target.refId}`;
      const uid = target.datasource?.uid ?? panel.datasource?.uid;
      if (uid !== '${DS_PROMETHEUS}') problem(`${where}: datasource ${JSON.stringify(uid)}, not \${DS_PROMETHEUS}`);
      const printed = [...String(target.legendFormat ?? '').matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)].map(
        (m) => m[1],
      );
      uses.push({ where, expr: String(target.expr ?? ''), printed });
    }
  }
  // Grafana's variables, as a query sends them
  const substitute = (expr) =>
    expr
      .replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m')
      .replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (all, a, b) => variables[a ?? b] ?? all);
  for (const use of uses) use.expr = substitute(use.expr);
  return uses;
}

// ---------------------------------------------------------------- the live server

async function freePort() {
  const probe = createServer();
  await new Promise((done) => probe.listen(0, '127.0.0.1', done));
  const { port } = probe.address();
  await new Promise((done) => probe.close(done));
  return port;
}

async function liveMetrics() {
  const port = await freePort();
  const metricsToken = randomBytes(24).toString('base64url');
  const jwtSecret = randomBytes(32).toString('base64url');
  const base = `http://127.0.0.1:${port}`;
  let log = '';
  const server = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'development',
      PORT: String(port),
      HOST: '127.0.0.1',
      PGLITE_DIR: 'memory://',
      METRICS_TOKEN: metricsToken,
      JWT_SECRET: jwtSecret,
      AUTH_BUILTIN: 'false',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
      CONCURRENCY_PER_USER: '1', // one request held open meets the cap
      WEBHOOK_POLL_MS: '100',
    },
  });
  server.stdout.on('data', (chunk) => (log += chunk));
  server.stderr.on('data', (chunk) => (log += chunk));
  const receiver = createServer((req, res) => req.resume().on('end', () => res.writeHead(204).end()));
  await new Promise((done) => receiver.listen(0, '127.0.0.1', done));
  const stop = async () => {
    receiver.close();
    if (server.exitCode !== null) return;
    const exited = new Promise((done) => server.once('exit', done));
    server.kill('SIGTERM');
    const timer = setTimeout(() => server.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const ready = await fetch(`${base}/health/ready`).then(
        (res) => res.ok,
        () => false,
      );
      if (ready) break;
      if (server.exitCode !== null || Date.now() > deadline)
        throw new Error(
          `the server did not become ready (${server.exitCode !== null ? `exited ${server.exitCode}` : 'timed out'}); the end of its log:\n${log.split('\n').slice(-30).join('\n')}`,
        );
      await new Promise((done) => setTimeout(done, 200));
    }
    const token = (sub) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(sub)
        .setIssuedAt()
        .setExpirationTime('10m')
        .sign(new TextEncoder().encode(jwtSecret));
    const alice = { Authorization: `Bearer ${await token('ops-check-alice')}` };
    const json = { ...alice, 'Content-Type': 'application/json' };
    const call = async (path, init = {}) => {
      const res = await fetch(`${base}${path}`, init);
      const body = await res.text();
      return { status: res.status, body, json: () => JSON.parse(body) };
    };
    const must = async (path, init, status) => {
      const res = await call(path, init);
      if (res.status !== status)
        throw new Error(`${init?.method ?? 'GET'} ${path}: ${res.status}, not ${status}: ${res.body}`);
      return res;
    };

    await must('/health/live', {}, 200);
    await call('/no/such/path');
    const hook = await must(
      '/api/v1/webhooks',
      {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ url: `http://127.0.0.1:${receiver.address().port}/hook`, events: ['task.created'] }),
      },
      201,
    );
    const task = (
      await must('/api/v1/tasks', { method: 'POST', headers: json, body: '{"title":"ops check"}' }, 201)
    ).json();
    await must('/api/v1/tasks', { headers: alice }, 200);
    await must(`/api/v1/tasks/${task.id}`, { headers: alice }, 200);
    await call(`/api/v1/tasks/${task.id.replace(/.$/, (c) => (c === '0' ? '1' : '0'))}`, { headers: alice });
    const upload = await must(
      `/api/v1/tasks/${task.id}/attachments`,
      {
        method: 'POST',
        headers: { ...alice, 'Content-Type': 'text/plain', 'Content-Disposition': 'attachment; filename="a.txt"' },
        body: 'hello, operator\n',
      },
      201,
    );
    await must(`/api/v1/attachments/${upload.json().id}/content`, { headers: alice }, 200);
    await call(`/api/v1/tasks/${task.id}/attachments`, {
      method: 'POST',
      headers: { ...alice, 'Content-Type': 'image/png' },
      body: 'this is not a PNG\n',
    });
    await call(`/api/v1/webhooks/${hook.json().id}/deliveries`, { headers: alice });

    const metrics = () =>
      must('/metrics', { headers: { Authorization: `Bearer ${metricsToken}` } }, 200).then((r) => r.body);
    // the in-process webhook worker starts after the API serves (seconds on PGlite)
    const hookDeadline = Date.now() + 60_000;
    let webhookSeen = false;
    while (!(webhookSeen = /^webhook_delivery_attempts_total\{/m.test(await metrics())) && Date.now() < hookDeadline)
      await new Promise((done) => setTimeout(done, 250));

    // One of alice's requests held open (half its JSON body sent: it holds her place, not the
    // gate's) while another of hers arrives: 429 at CONCURRENCY_PER_USER. (A burst meets neither
    // the caps nor the gate here: on PGlite a request runs from start to end without yielding.)
    const body = '{"title":"held open"}';
    const held = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/api/v1/tasks',
      headers: { ...json, 'Content-Length': Buffer.byteLength(body) },
    });
    const heldStatus = new Promise((done, fail) => {
      held.on('response', (res) => res.resume().on('end', () => done(res.statusCode)));
      held.on('error', fail);
    });
    held.write(body.slice(0, 9));
    await new Promise((done) => setTimeout(done, 300));
    const second = await call('/api/v1/tasks', { headers: alice });
    held.end(body.slice(9));
    const first = await heldStatus;
    const attempt = webhookSeen ? 'a webhook attempt made' : 'no webhook attempt within 60 s';
    say(
      `server on :${port} (PGlite in memory): ${attempt}; a request held open: ${first}, another meanwhile: ${second.status}`,
    );
    return await metrics();
  } finally {
    await stop();
  }
}

/** The exposition's families: name → { type, samples: Map(sample name → Set of label names) }. */
function families(text) {
  const found = new Map();
  const family = (name) => {
    if (!found.has(name)) found.set(name, { type: 'untyped', samples: new Map() });
    return found.get(name);
  };
  const owner = (sample) => {
    for (const suffix of ['_bucket', '_sum', '_count', '']) {
      const base = suffix === '' ? sample : sample.slice(0, -suffix.length);
      if (sample.endsWith(suffix) && found.has(base) && found.get(base).type !== 'untyped') return found.get(base);
    }
    return family(sample);
  };
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) family(type[1]).type = type[2];
    if (line.startsWith('#') || line.trim() === '') continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s/.exec(line);
    if (!sample) continue;
    const labels = [...(sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:\\.|[^"\\])*"/g)].map((m) => m[1]);
    const f = owner(sample[1]);
    if (!f.samples.has(sample[1])) f.samples.set(sample[1], new Set());
    for (const label of labels) f.samples.get(sample[1]).add(label);
  }
  return found;
}

/** `labelNames` of each metric declared in src/ (new Counter/Gauge/Histogram/Summary({ name, labelNames })). */
function declaredLabels() {
  const declared = new Map();
  const walk = (dir) =>
    readdirSync(dir).flatMap((entry) => {
      const path = join(dir, entry);
      return statSync(path).isDirectory() ? walk(path) : path.endsWith('.ts') ? [path] : [];
    });
  for (const file of walk(join(repo, 'src'))) {
    const source = readFileSync(file, 'utf8');
    for (const match of source.matchAll(/new (?:Counter|Gauge|Histogram|Summary)\(\{([\s\S]*?)\n\s*\}\)/g)) {
      const name = /name:\s*'([^']+)'/.exec(match[1])?.[1];
      if (name === undefined) continue;
      const list = /labelNames:\s*\[([^\]]*)\]/.exec(match[1])?.[1] ?? '';
      declared.set(
        name,
        [...list.matchAll(/'([^']+)'/g)].map((m) => m[1]),
      );
    }
  }
  return declared;
}

// ---------------------------------------------------------------- 4. the comparison

function compare(uses, exposition) {
  const found = families(exposition);
  const declared = declaredLabels();
  const sampleNames = new Map(); // sample name → { family, labels (Set) | ANY, note }
  const notes = new Set();
  for (const [name, f] of found) {
    const names =
      f.type === 'histogram'
        ? [`${name}_bucket`, `${name}_sum`, `${name}_count`]
        : f.type === 'summary'
          ? [name, `${name}_sum`, `${name}_count`]
          : [name];
    for (const sample of new Set([...names, ...f.samples.keys()])) {
      let labels;
      let note;
      if (f.samples.has(sample)) labels = new Set(f.samples.get(sample));
      else {
        const fromSource = declared.get(name);
        note =
          fromSource === undefined
            ? `${name}: no sample in this run and no declaration in src/: its labels are not checked`
            : `${name}: no sample in this run: labels from its declaration in src/ (${fromSource.join(', ') || 'none'})`;
        labels = fromSource === undefined ? ANY : new Set(fromSource);
        if (labels !== ANY && f.type === 'histogram' && sample.endsWith('_bucket')) labels.add('le');
        if (labels !== ANY && f.type === 'summary' && sample === name) labels.add('quantile');
      }
      sampleNames.set(sample, { family: name, type: f.type, labels, note });
    }
  }

  const recorded = new Map(); // record name → labels its expression keeps
  const reported = new Set();
  const once = (line) => {
    if (!reported.has(line)) (reported.add(line), problem(line));
  };
  for (const use of uses) {
    let tree;
    try {
      tree = parse(use.expr);
    } catch (error) {
      problem(`${use.where}: cannot read its PromQL (${error.message}): ${use.expr.replace(/\s+/g, ' ').trim()}`);
      continue;
    }
    const env = {
      onMetric(name) {
        if (recorded.has(name)) return recorded.get(name);
        if (SYNTHETIC.has(name)) return new Set(TARGET_LABELS);
        const sample = sampleNames.get(name);
        if (sample !== undefined) {
          if (sample.note !== undefined) notes.add(sample.note);
          if (sample.labels === ANY) return ANY;
          return union(sample.labels, new Set(TARGET_LABELS));
        }
        const f = found.get(name);
        if (f !== undefined && (f.type === 'histogram' || f.type === 'summary'))
          once(`${use.where}: ${name} is a ${f.type}: query ${name}_bucket, ${name}_sum or ${name}_count`);
        else {
          const near = [...sampleNames.keys()].filter((s) => distance(s, name) <= 3);
          once(
            `${use.where}: metric ${name} is not exported by /metrics${near.length ? ` (did you mean ${near.join(', ')}?)` : ''}`,
          );
        }
        return ANY;
      },
      onLabel(label, where, offered) {
        once(
          `${use.where}: label "${label}" (${where}) does not exist there; it has ${offered === ANY ? '?' : [...offered].sort().join(', ') || 'no labels'}`,
        );
      },
    };
    const result = analyse(tree, env);
    for (const label of use.printed) {
      if (result === ANY || result === 'scalar' || result.has(label)) continue;
      once(
        `${use.where}: prints label "${label}", which its result does not have (it keeps ${[...result].sort().join(', ') || 'no labels'})`,
      );
    }
    if (use.recordAs !== undefined) recorded.set(use.recordAs, result === 'scalar' ? new Set() : result);
  }
  for (const note of [...notes].sort()) say(`note: ${note}`);
  return { metrics: new Set([...sampleNames.values()].map((s) => s.family)).size, uses: uses.length };
}

function distance(a, b) {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length];
}

// ---------------------------------------------------------------- main

const started = Date.now();
say(`checking ${shown(opsDir)}`);
promtool();
const uses = rulesAndDashboard();
let exposition;
try {
  exposition = await liveMetrics();
} catch (error) {
  problem(`the live server: ${error.message}`);
}
if (exposition !== undefined) {
  const { metrics, uses: count } = compare(uses, exposition);
  say(`${count} queries (rules, dashboard panels and variables) against ${metrics} metrics of a live /metrics`);
}
if (problems.length > 0) {
  for (const line of problems) process.stderr.write(`check-ops: ${line}\n`);
  process.stderr.write(`check-ops: FAILED, ${problems.length} problem${problems.length === 1 ? '' : 's'}\n`);
  process.exit(1);
}
say(`ok (${((Date.now() - started) / 1000).toFixed(1)} s)`);
