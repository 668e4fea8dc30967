import { ConfigError, loadConfig, type Config } from './config.js';
import { DataDirectoryInUse } from './db/data-dir-lock.js';
import { ListenFailed } from './http/http-server.js';
import { flushLogs } from './logger.js';

/** What `npm start` and `npm run worker` share before and after their work. */

/** The configuration, or one line saying what is wrong with it and exit 1. */
export function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
}

/** Ends a process whose start failed: a known refusal says what to do in one line; anything else gets its stack. */
export async function exitOnFailure(error: unknown): Promise<never> {
  if (error instanceof DataDirectoryInUse || error instanceof ListenFailed) process.stderr.write(`${error.message}\n`);
  else process.stderr.write(`fatal: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  await flushLogs(); // the lines logged before it, e.g. 'database ready'
  process.exit(1);
}
