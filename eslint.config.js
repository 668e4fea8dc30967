import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/**
 * ESLint over everything we write (`npm run lint:code`): typescript-eslint's recommended rules,
 * type-aware for TypeScript (each file checked with the tsconfig that owns it), the plain
 * recommended rules for JavaScript. Formatting is Prettier's job (`npm run format:check`), not
 * ESLint's. Import direction is dependency-cruiser's (`npm run lint:deps`).
 */
export default tseslint.config(
  {
    ignores: [
      'generated/**',
      'dist/**',
      '**/dist/**',
      'node_modules/**',
      'sdk-check/out/**',
      'sdk-check/node_modules/**',
      '.cache/**',
      'coverage/**',
      'bench/results/**',
      'scripts/templates/**',
    ],
  },
  // A disable comment that no longer disables anything is an error, so none outlives its reason.
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  js.configs.recommended,
  {
    rules: {
      // A variable that a callback set up before its assignment reads stays `let` (`auth: () => token`
      // before the login that sets it): as a `const` declared after, it would be in its temporal dead zone.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  // ES modules on Node: its globals without CommonJS's (require, module, __dirname are not defined there).
  { languageOptions: { globals: { ...globals.nodeBuiltin } } },
  // .dependency-cruiser.cjs and any other .cjs file is CommonJS (module.exports, require).
  { files: ['**/*.cjs'], languageOptions: { sourceType: 'commonjs', globals: { ...globals.node } } },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // `async` is how this code states and keeps a Promise contract (route handlers, Kysely driver
      // and plugin methods, ConcurrencyStore, test doubles): it turns a throw into a rejection, which
      // dropping it would change. Forgotten awaits are no-floating-promises' and no-misused-promises' job.
      '@typescript-eslint/require-await': 'off',
      // `const { omitted: _, ...rest } = value` is how a property is left out of a copy.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
    },
  },
  {
    // examples/tsconfig.json sees `@tasks-api/client` through the built package (npm run check:client
    // builds it first); for lint, the same types come from the package's source, so no build is needed.
    files: ['examples/frontend.ts'],
    languageOptions: { parserOptions: { projectService: false, project: './examples/tsconfig.eslint.json' } },
  },
  {
    // A consumer project whose imports exist only while scripts/check-sdk.sh runs (its own npm ci, the
    // clients it generates into sdk-check/out), which type-checks it with tsc --strict: no type information here.
    files: ['sdk-check/**/*.ts'],
    extends: [tseslint.configs.disableTypeChecked],
    // Its compile-time assertions are type aliases nothing uses (`type _Status412Narrowed = Expect<…>`).
    rules: { '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, varsIgnorePattern: '^_' }] },
  },
  {
    // These walk and change arbitrary OpenAPI / JSON Schema documents, typed `any` on purpose (one
    // declaration each, with its own disable comment): the no-unsafe-* rules would flag every step.
    files: ['tests/scripts/breaking-change-gate.test.ts', 'tests/contract/contract.fuzz.test.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  // Browser code (examples/web/serve.mjs is the Node server that bundles it).
  {
    files: ['examples/web/**', 'packages/client/**'],
    ignores: ['examples/web/serve.mjs'],
    languageOptions: { globals: { ...globals.browser } },
  },
);
