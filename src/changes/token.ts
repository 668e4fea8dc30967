import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../db/schema.js';

/*
 * Feed tokens: a position in one owner's change history, opaque and tamper-evident. 25 bytes in
 * base64url: a format byte, the position (8 bytes, big-endian) and the first 16 bytes of an
 * HMAC-SHA-256 over the owner and the position, keyed by the deployment's key (made by migration
 * 0010, shared by every process through the database). A token altered, cut short or issued to
 * another owner fails the check; nothing in it says whose it is.
 */

const FORMAT = 1;
const MAC_BYTES = 16;
const TOKEN_BYTES = 1 + 8 + MAC_BYTES;

export interface ChangeTokens {
  /** The token for `owner` at `position`. */
  sign(owner: string, position: number): Promise<string>;
  /** The position `token` holds for `owner`, or undefined when it is not a token issued to `owner`. */
  verify(owner: string, token: string): Promise<number | undefined>;
}

/** Tokens signed with the key in `change_token_keys`, read once (the database's connecting role reads it). */
export function changeTokens(db: Kysely<DB>): ChangeTokens {
  let key: Promise<Buffer> | undefined;
  const keyOnce = () =>
    (key ??= db
      .selectFrom('change_token_keys')
      .select('key')
      .where('id', '=', 1)
      .executeTakeFirstOrThrow()
      .then((row) => Buffer.from(row.key))
      .catch((error: unknown) => {
        key = undefined; // read again next time: the database may have been down
        throw error;
      }));
  const mac = (secret: Buffer, owner: string, position: Buffer) =>
    createHmac('sha256', secret).update(owner).update('\0').update(position).digest().subarray(0, MAC_BYTES);

  return {
    async sign(owner, position) {
      const bytes = Buffer.alloc(TOKEN_BYTES);
      bytes[0] = FORMAT;
      bytes.writeBigUInt64BE(BigInt(position), 1);
      mac(await keyOnce(), owner, bytes.subarray(1, 9)).copy(bytes, 9);
      return bytes.toString('base64url');
    },
    async verify(owner, token) {
      const bytes = Buffer.from(token, 'base64url');
      if (bytes.length !== TOKEN_BYTES || bytes[0] !== FORMAT || bytes.toString('base64url') !== token)
        return undefined;
      const expected = mac(await keyOnce(), owner, bytes.subarray(1, 9));
      if (!timingSafeEqual(expected, bytes.subarray(9))) return undefined;
      const position = bytes.readBigUInt64BE(1);
      return position <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(position) : undefined;
    },
  };
}
