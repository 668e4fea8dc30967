// Bench only: loaded into the API with `node --import ./bench/lib/profiler.mjs` by
// `npm run bench -- --profile`. SIGUSR2 starts V8's sampling CPU profiler; the next SIGUSR2 stops
// it and writes `${BENCH_PROFILE_OUT}.<n>.cpuprofile`, then an empty `….done` beside it so the
// bench knows the profile is complete. Only the measured load is profiled, not start-up or warm-up.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

const session = new Session();
session.connect();
let running = false;
let index = 0;
process.on('SIGUSR2', async () => {
  if (!running) {
    running = true;
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    return;
  }
  running = false;
  const { profile } = await session.post('Profiler.stop');
  const out = `${process.env.BENCH_PROFILE_OUT}.${index++}.cpuprofile`;
  writeFileSync(out, JSON.stringify(profile));
  writeFileSync(`${out}.done`, '');
});
