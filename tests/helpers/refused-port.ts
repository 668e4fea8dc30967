import { connect, type Socket } from 'node:net';

/**
 * Port 1 on 127.0.0.1, where nothing listens, for a test that needs a connection refused:
 * checked first, so that something listening there fails the test loudly rather than as a wrong
 * answer. Not a port found free and closed again: that one is in the range the kernel hands out,
 * and a server another test file starts on port 0 meanwhile can take it.
 */
export async function refusedPort(): Promise<number> {
  const port = 1;
  const refused = await new Promise<boolean>((resolve) =>
    connect(port, '127.0.0.1')
      .once('connect', function (this: Socket) {
        this.destroy();
        resolve(false);
      })
      .once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED')),
  );
  if (!refused) throw new Error(`something answers on 127.0.0.1:${port}; the tests need it refused`);
  return port;
}
