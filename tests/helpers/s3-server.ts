import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @ts-expect-error s3rver ships no type declarations; the shape used here is declared below
import S3rverModule from 's3rver';

/** The part of s3rver 3.7's (CommonJS, untyped) API this helper uses. */
interface S3rverOptions {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}
interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer: Server;
}
const S3rver = S3rverModule as new (options: S3rverOptions) => S3rverInstance;

/** One request s3rver answered (or is answering): what a test can check that a client sent. */
export interface S3Request {
  method: string;
  /** Path and query, e.g. `/bucket/attachments/<id>?uploadId=…`. */
  url: string;
  /** The response's status, once it was sent (in full, or its head before the exchange ended). */
  status?: number;
  /** The response was handed to the connection in full. */
  finished: boolean;
  /**
   * The connection the request came on has closed. A client that keeps connections alive leaves
   * it open after a response it read to the end (until it is idle for 5 s, s3rver's timeout), so
   * a quick close means the client dropped the connection, e.g. giving up on a body.
   */
  connectionClosed: boolean;
}

export interface S3Server {
  /** `http://127.0.0.1:<port>`: give it to the client as `endpoint` (path-style addressing). */
  endpoint: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** s3rver's on-disk state (objects, and multipart uploads under `<bucket>/._S3rver_uploads/`). */
  directory: string;
  /** Every request so far, in arrival order. */
  requests: S3Request[];
  close(): Promise<void>;
}

/**
 * A local S3-compatible server for tests: s3rver in this process, on loopback only, with a fresh
 * directory and one empty bucket; `close` stops it and deletes the directory. s3rver accepts only
 * its own fixed credentials (S3RVER / S3RVER), which it checks the SigV4 signature against.
 */
export async function startS3Server(): Promise<S3Server> {
  const directory = await mkdtemp(join(tmpdir(), 'tasks-api-s3rver-'));
  const bucket = 'attachments-test';
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  let address: AddressInfo;
  try {
    address = await server.run();
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
  const requests: S3Request[] = [];
  // Requests by connection, so one 'close' listener per socket serves all its kept-alive requests.
  const bySocket = new WeakMap<Socket, S3Request[]>();
  server.httpServer.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const record: S3Request = {
      method: req.method ?? '',
      url: req.url ?? '',
      finished: false,
      connectionClosed: false,
    };
    requests.push(record);
    res.on('finish', () => {
      record.status = res.statusCode;
      record.finished = true;
    });
    res.on('close', () => {
      if (res.headersSent) record.status ??= res.statusCode;
    });
    const socket = req.socket;
    if (socket.destroyed) {
      record.connectionClosed = true;
      return;
    }
    let onSocket = bySocket.get(socket);
    if (onSocket === undefined) {
      const records: S3Request[] = (onSocket = []);
      bySocket.set(socket, records);
      socket.once('close', () => {
        for (const r of records) r.connectionClosed = true;
      });
    }
    onSocket.push(record);
  });
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    bucket,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    directory,
    requests,
    async close() {
      const closed = server.close();
      // A client's idle keep-alive sockets would otherwise hold `close` open until they time out.
      server.httpServer.closeAllConnections();
      try {
        await closed;
      } finally {
        await rm(directory, { recursive: true, force: true });
      }
    },
  };
}
