// Types of what tests import from contract-diff.mjs (the script itself is plain JavaScript).
/** The gate as `node scripts/contract-diff.mjs <argv>` runs it, writing lines to `log` and `error`; its exit code. */
export function runGate(
  argv: string[],
  output?: { log?: (line: string) => void; error?: (line: string) => void },
): Promise<number>;
