import { spawn, type ChildProcess } from 'node:child_process';

/**
 * `count` processes that each spin one core, as other people's work does on a busy machine:
 * races that a quiet machine hides (a server that reads a socket late) show up under them.
 * Each one also stops by itself after `maxMs`, so a crashed test run leaves nothing spinning.
 */
export function busyCores(count: number, maxMs = 60_000): { stop: () => void } {
  const hogs: ChildProcess[] = Array.from({ length: count }, () =>
    spawn(process.execPath, ['-e', `const end = Date.now() + ${maxMs}; while (Date.now() < end);`], {
      stdio: 'ignore',
    }),
  );
  return { stop: () => hogs.forEach((hog) => hog.kill('SIGKILL')) };
}
