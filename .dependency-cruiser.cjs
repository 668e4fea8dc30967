/**
 * The architecture of src/, as rules a machine checks (`npm run lint:deps`).
 *
 * Imports point down only:
 *
 *   composition roots   main.ts, worker.ts, entrypoint.ts, app.ts, operations.ts: wire everything
 *         │
 *   features            tasks/, attachments/, webhooks/, users/ (and idempotency/, a service they share)
 *         │
 *   http/  ──▶  auth/   cross-cutting HTTP (error handler, paging, handler types) and identity;
 *         │       │     http may use auth, auth knows nothing of http (but its own endpoint handlers)
 *         ▼       ▼
 *   db/                 Kysely, the owner scope, migrations (frozen: only the migrator loads them)
 *         │
 *   config.ts, logger.ts, errors/   the base: every layer may import them, they import (almost) nothing
 *   telemetry/tracing.ts            part of the base: tracing helpers over the OpenTelemetry API alone
 *
 * Type-only imports count like any other (`tsPreCompilationDeps`): a type a lower layer needs from
 * a higher one is a type in the wrong place, and a cycle through types is still a cycle for
 * whoever reads or moves the code. Each rule's `comment` says why it exists; the exceptions are
 * named in it, so a new one is a decision made here, in review, not an accident.
 */

/** The feature folders: each owns its handlers, service, queries and errors. */
const FEATURES = '(tasks|attachments|webhooks|users|idempotency|changes)';
/** The modules that wire the app together; nothing else may import them. */
const ROOTS = '^src/(main|worker|entrypoint|app|operations)[.]ts$';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'No import cycles, type-only ones included: a cycle means neither module can be understood, tested or moved ' +
        'without the other, and at run time ESM evaluates one of them half-initialised.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'errors-are-a-leaf',
      severity: 'error',
      comment:
        'src/errors/ (HttpProblem and the generic problem types) is imported by every layer, so it imports nothing ' +
        'from src/ but itself (the contract types in generated/ are not src/). Anything it imported, every layer ' +
        'would import too: that is how auth/errors.ts once pulled in http/.',
      from: { path: '^src/errors/' },
      to: { path: '^src/', pathNot: '^src/errors/' },
    },
    {
      name: 'config-imports-no-app-module',
      severity: 'error',
      comment:
        'config.ts is read by every layer, so it imports no module of the app but the leaves in errors/. A setting ' +
        'that a feature or http/ uses (DEFAULT_ALLOWED_TYPES, CapacityLimits, OverloadLimits) is declared in ' +
        'config.ts and imported from there by the feature, never the other way round.',
      from: { path: '^src/config[.]ts$' },
      to: { path: '^src/', pathNot: '^src/errors/' },
    },
    {
      name: 'logger-is-base',
      severity: 'error',
      comment:
        'logger.ts is imported by every layer, db/ included; it may read config.ts, errors/ and telemetry/tracing.ts ' +
        '(the trace ids on a line), nothing higher.',
      from: { path: '^src/logger[.]ts$' },
      to: { path: '^src/', pathNot: '^src/(config[.]ts$|errors/|telemetry/tracing[.]ts$)' },
    },
    {
      name: 'telemetry-is-base',
      severity: 'error',
      comment:
        'telemetry/ is under every layer: tracing.ts imports nothing of ours (every layer, db/ and logger.ts included, ' +
        'may call it), and the preload, which runs before the app is loaded, reads only config.ts.',
      from: { path: '^src/telemetry/' },
      to: { path: '^src/', pathNot: '^src/(telemetry/|config[.]ts$)' },
    },
    {
      name: 'db-imports-only-the-base',
      severity: 'error',
      comment:
        'db/ sits under auth, http and the features: it imports only db/, config.ts, logger.ts, errors/ and ' +
        'telemetry/tracing.ts (the owner scope hands the trace context to the outbox). That is ' +
        'why the branded OwnerId type is declared in db/owner-id.ts (auth/owner-id.ts re-exports it beside the ' +
        'only function that makes one) and the role names of row-level security in db/roles.ts.',
      from: { path: '^src/db/' },
      to: { path: '^src/', pathNot: '^src/(db/|config[.]ts$|logger[.]ts$|errors/|telemetry/tracing[.]ts$)' },
    },
    {
      name: 'migrations-are-frozen',
      severity: 'error',
      comment:
        'A migration is history: it must do tomorrow what it did when it first ran. So no runtime code imports one ' +
        '(only the migrator, db/migrate.ts, which lists them statically for bundlers and ESM), and a migration ' +
        'imports no runtime code, only earlier migrations (0005 and 0006 reuse isolateByOwner from 0004, 0007 a ' +
        'function body of 0006), which are frozen too. Runtime copies of names a migration created live in db/ ' +
        '(db/roles.ts); tests/db/migration-names.test.ts keeps them equal.',
      from: { pathNot: '^src/db/(migrate[.]ts$|migrations/)' },
      to: { path: '^src/db/migrations/' },
    },
    {
      name: 'migrations-import-no-runtime-code',
      severity: 'error',
      comment: 'See migrations-are-frozen: a migration that imported runtime code would change when that code does.',
      from: { path: '^src/db/migrations/' },
      to: { path: '^src/', pathNot: '^src/db/migrations/' },
    },
    {
      name: 'auth-knows-no-http',
      severity: 'error',
      comment:
        'http/ uses auth/ (the bearer security handler, the token verifier), so auth/ does not import http/. ' +
        "Exception: the built-in issuer's operation handlers (auth/builtin/auth.handlers.ts, any *.handlers.ts) " +
        "are endpoints like a feature's and take their types from http/handler.ts; nothing in http/ imports them.",
      from: { path: '^src/auth/', pathNot: '[.]handlers[.]ts$' },
      to: { path: '^src/http/' },
    },
    {
      name: 'lower-layers-know-no-feature',
      severity: 'error',
      comment:
        'http/, auth/, db/ and the base serve every feature and know none: a feature plugs in through ' +
        'operations.ts (its handlers) and main.ts (its workers), which pass what it needs as arguments.',
      from: { path: '^src/(http|auth|db|errors)/|^src/(config|logger)[.]ts$' },
      to: { path: `^src/${FEATURES}/` },
    },
    {
      name: 'features-keep-to-themselves',
      severity: 'error',
      comment:
        "A feature does not import another feature's internals: what several share belongs in a lower layer " +
        '(paging cursors in http/paging.ts, problem types in errors/). Two documented exceptions: ' +
        "idempotency/idempotency.ts is a service every feature may use (tasks' POST honours Idempotency-Key), and " +
        "attachments/ may throw tasks/errors.ts's TaskNotFound, because an attachment lives under its task " +
        '(/tasks/{taskId}/attachments) and a missing or foreign task must be the very same 404 there. ' +
        'A third: changes/ shows each changed task through tasks/task.mapper.ts, so a task in the feed is the very same JSON as GET /tasks/{taskId}.',
      from: { path: `^src/${FEATURES}/` },
      to: {
        path: `^src/${FEATURES}/`,
        pathNot: [
          '^src/$1/',
          '^src/idempotency/idempotency[.]ts$',
          '^src/tasks/errors[.]ts$',
          '^src/tasks/task[.]mapper[.]ts$',
        ],
      },
    },
    {
      name: 'only-attachments-use-task-errors',
      severity: 'error',
      comment:
        'The tasks/errors.ts exception of features-keep-to-themselves is for attachments/ (a sub-resource of a task) only.',
      from: { path: `^src/${FEATURES}/`, pathNot: '^src/(tasks|attachments)/' },
      to: { path: '^src/tasks/errors[.]ts$' },
    },
    {
      name: 'registration-does-not-import-the-sender',
      severity: 'error',
      comment:
        'The SSRF address rules live in webhooks/address-rules.ts, used by both registration (destination.ts, on the ' +
        "request path) and the sender (the worker's outbound agents). Registration importing the sender would pull " +
        'the delivery machinery into the request path and split the rules again.',
      from: { path: '^src/webhooks/(destination|address-rules)[.]ts$' },
      to: { path: '^src/webhooks/(sender|jobs/)' },
    },
    {
      name: 'nothing-imports-the-composition-roots',
      severity: 'error',
      comment:
        'main.ts, worker.ts, entrypoint.ts, app.ts and operations.ts wire the layers together; a module below that ' +
        'imported one of them would depend on everything. Only the roots import each other (main → app → operations).',
      from: { pathNot: ROOTS },
      to: { path: ROOTS },
    },
    {
      name: 'src-imports-no-tests-scripts-or-bench',
      severity: 'error',
      comment:
        'Production code carries no hook that only a test, a script or a benchmark uses; they import src/, never the ' +
        'other way round (the client package and examples are built from the contract, not from src/ either).',
      from: { path: '^src/' },
      to: { path: '^(tests|scripts|bench|examples|packages|sdk-check|dist)/' },
    },
    {
      name: 'no-dev-dependencies-at-run-time',
      severity: 'error',
      comment:
        'src/ runs in production, where devDependencies are not installed. Type-only imports are erased and so allowed.',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-unresolvable-imports',
      severity: 'error',
      comment:
        'An import that does not resolve is a typo or a missing package; the checks above could not see past it.',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-orphans',
      severity: 'error',
      comment:
        'A module nothing imports and that imports nothing is dead code (or forgotten). Entry points (main.ts, ' +
        'worker.ts) import plenty, so they are not orphans; ambient declaration files (*.d.ts) act without being imported.',
      from: { orphan: true, pathNot: '[.]d[.]ts$' },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports are dependencies too (see the top of this file).
    tsPreCompilationDeps: true,
    // Resolves the `.js`-suffixed imports of NodeNext to their `.ts` sources, as tsc does.
    tsConfig: { fileName: 'tsconfig.json' },
    // ESM packages that publish only an `exports` map (file-type, jose, …) resolve like Node resolves them.
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'types', 'default'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
