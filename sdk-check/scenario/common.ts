// What both scenarios share: the server's origin, the data, assertions that fail loudly, and the
// type-level checks that make the compiler prove what the contract promises a generated client.

/** The origin of the server under test (scripts/check-sdk.sh sets it). */
export const origin = (() => {
  const value = process.env.SDK_CHECK_ORIGIN;
  if (!value) throw new Error('SDK_CHECK_ORIGIN is not set (scripts/check-sdk.sh sets it)');
  return value.replace(/\/$/, '');
})();

/** A search with spaces and every character a query string treats specially. */
export const query = 'milk & eggs?/#+=%';
/** Two titles that contain `query` (so limit=1 gives two pages), and decoys a mis-encoded query would match. */
export const matching = [`Buy ${query} one`, `Buy ${query} two`];
export const decoys = [
  'Buy milk & eggs?/# =% (a + sent unencoded reads as a space)',
  'Buy milk (an & sent unencoded ends q after "milk ")',
  'Buy milk and eggs',
];

let current = 'start';

export class CheckFailed extends Error {}

/** Fails the current step with what was expected and what came. */
export function fail(message: string, got?: unknown): never {
  const detail = got === undefined ? '' : `\n  got: ${JSON.stringify(got, null, 2)?.slice(0, 2000)}`;
  throw new CheckFailed(`${current}: ${message}${detail}`);
}

export function check(condition: unknown, message: string, got?: unknown): asserts condition {
  if (!condition) fail(message, got);
}

export function step(name: string): void {
  current = name;
  console.log(`  - ${name}`);
}

/** Runs a scenario: prints each step, and exits non-zero with the failing step's message. */
export async function run(client: string, scenario: () => Promise<void>): Promise<void> {
  console.log(`${client} against ${origin}`);
  try {
    await scenario();
    console.log(`${client}: ok`);
  } catch (error) {
    console.error(`${client}: FAILED at ${error instanceof CheckFailed ? error.message : `${current}: ${String(error)}`}`);
    if (!(error instanceof CheckFailed) && error instanceof Error && error.stack) console.error(error.stack);
    process.exit(1);
  }
}

/** An account of its own for each run, through the built-in issuer. */
export function account(client: string): { email: string; password: string } {
  return { email: `sdk-check-${client}-${crypto.randomUUID()}@example.com`, password: 'correct horse battery staple' };
}

// --- type-level checks: these lines fail to compile, not to run, when the contract regresses ---

export type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
export type Expect<T extends true> = T;
/** True when T is exactly one literal (e.g. `412`), not a wider `number` or `string`. */
export type IsLiteral<T> = [T] extends [never] ? false : number extends T ? false : string extends T ? false : true;
/** The header names a response declares (the index signature openapi-typescript adds left out). */
export type DeclaredHeaders<H> = keyof { [K in keyof H as string extends K ? never : K]: H[K] };

/**
 * The headers the contract declares for a response (H is that response's `headers` type):
 * `get(name)` takes only a declared name, so a header the contract stops declaring is a compile
 * error, and returns the declared type; a declared header missing at run time fails the step.
 */
export function typedHeaders<H>(response: Response) {
  return {
    get<K extends DeclaredHeaders<H> & string>(name: K): NonNullable<H[K & keyof H]> {
      const value = response.headers.get(name);
      check(value !== null, `response ${response.status} has no ${name} header`);
      return value as NonNullable<H[K & keyof H]>;
    },
  };
}
