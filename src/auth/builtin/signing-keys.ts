import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import {
  calculateJwkThumbprint,
  errors,
  exportJWK,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JWK,
  type JWTHeaderParameters,
} from 'jose';
import type { Kysely } from 'kysely';
import type { DB } from '../../db/schema.js';

/** A new signing key is made when the newest is older than this; the old one stops signing. */
export const ROTATE_AFTER_MS = 30 * 24 * 3600_000;
/** A retired key stays published this long: longer than any access token it signed can live. */
const PUBLISH_RETIRED_FOR_MS = 25 * 3600_000;
/** At most this many keys are published (the contract's bound). */
const MAX_PUBLISHED = 20;
/** Keys are re-read from the database at least this often (other processes may have rotated). */
const RELOAD_AFTER_MS = 60_000;
/** An unknown `kid` re-reads them at most this often, so forged kids cannot flood the database. */
const UNKNOWN_KID_COOLDOWN_MS = 1000;

export interface PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

interface StoredKey {
  kid: string;
  publicJwk: PublicJwk;
  privateJwk: string;
  createdAt: Date;
}

/** The private JWK at rest: AES-256-GCM under a key derived from KEY_ENCRYPTION_SECRET, bound to its kid. */
function keyCipher(secret: string) {
  const key = Buffer.from(hkdfSync('sha256', secret, 'tasks-api', 'signing-keys v1', 32));
  return {
    seal(plaintext: string, kid: string): string {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(Buffer.from(kid));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return `enc:v1:${[iv, body, cipher.getAuthTag()].map((part) => part.toString('base64url')).join('.')}`;
    },
    open(sealed: string, kid: string): string {
      const [iv, body, tag] = sealed
        .slice('enc:v1:'.length)
        .split('.')
        .map((part) => Buffer.from(part, 'base64url')) as [Buffer, Buffer, Buffer];
      const decipher = createDecipheriv('aes-256-gcm', key, iv).setAAD(Buffer.from(kid)).setAuthTag(tag);
      try {
        return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
      } catch {
        throw new SigningKeyLocked(kid, 'other-secret');
      }
    },
  };
}

export type SigningKeys = ReturnType<typeof signingKeys>;

/**
 * A stored signing key that does not open: KEY_ENCRYPTION_SECRET is another secret than the one it
 * was written with, or is not set. The message is what an operator must do (the start-up line).
 */
export class SigningKeyLocked extends Error {
  constructor(
    readonly kid: string,
    readonly reason: 'other-secret' | 'no-secret',
  ) {
    super(
      reason === 'other-secret'
        ? `The built-in issuer's signing keys were encrypted with another KEY_ENCRYPTION_SECRET: key ${kid} does not decrypt with this one. Start with the secret they were written with; if it is lost, delete the rows of signing_keys (a new key is made at start, and clients get new access tokens with their refresh tokens).`
        : `The built-in issuer's signing keys are stored encrypted (key ${kid}): set KEY_ENCRYPTION_SECRET to the secret they were written with.`,
    );
    this.name = 'SigningKeyLocked';
  }
}

/**
 * The built-in issuer's Ed25519 keys, kept in the database so every process signs and verifies
 * with the same ones. The newest key signs; after ROTATE_AFTER_MS a new one is made, and the
 * retired key stays published (and accepted) until every token it signed has expired.
 * With an encryption secret, private keys are stored only encrypted, and any stored in clear
 * text (from before the secret was set) are encrypted on load.
 */
export function signingKeys(db: Kysely<DB>, options: { encryptionSecret?: string } = {}) {
  const cipher = options.encryptionSecret === undefined ? undefined : keyCipher(options.encryptionSecret);
  let keys: StoredKey[] = [];
  let loadedAt = 0;
  let signer: { kid: string; key: CryptoKey } | undefined;

  async function load(): Promise<void> {
    const rows = await db.selectFrom('signing_keys').selectAll().orderBy('created_at', 'desc').orderBy('kid').execute();
    keys = rows.map((row) => ({
      kid: row.kid,
      publicJwk: (typeof row.public_jwk === 'string' ? JSON.parse(row.public_jwk) : row.public_jwk) as PublicJwk,
      privateJwk: row.private_jwk,
      createdAt: row.created_at,
    }));
    loadedAt = Date.now();
    if (cipher) {
      for (const key of keys.filter((k) => !k.privateJwk.startsWith('enc:'))) {
        key.privateJwk = cipher.seal(key.privateJwk, key.kid);
        await db.updateTable('signing_keys').set({ private_jwk: key.privateJwk }).where('kid', '=', key.kid).execute();
      }
    }
  }

  async function create(): Promise<void> {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const jwk = await exportJWK(pair.publicKey);
    const kid = await calculateJwkThumbprint(jwk);
    const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.x!, kid, alg: 'EdDSA', use: 'sig' };
    const privateJwk = JSON.stringify(await exportJWK(pair.privateKey));
    await db
      .insertInto('signing_keys')
      .values({
        kid,
        public_jwk: JSON.stringify(publicJwk),
        private_jwk: cipher ? cipher.seal(privateJwk, kid) : privateJwk,
      })
      .execute();
    await load();
  }

  async function fresh(): Promise<StoredKey[]> {
    if (Date.now() - loadedAt > RELOAD_AFTER_MS) await load();
    return keys;
  }

  /**
   * Keys still published: the newest, and each older one until PUBLISH_RETIRED_FOR_MS after its
   * successor appeared; never more than MAX_PUBLISHED (only rotations by hand could get there).
   */
  function publishedOf(all: StoredKey[]): StoredKey[] {
    const now = Date.now();
    return all
      .filter((_key, i) => i === 0 || all[i - 1]!.createdAt.getTime() + PUBLISH_RETIRED_FOR_MS > now)
      .slice(0, MAX_PUBLISHED);
  }

  return {
    /** The key new tokens are signed with; makes the first one, or the next one when due. */
    async current(): Promise<{ kid: string; key: CryptoKey }> {
      let [newest] = await fresh();
      if (newest === undefined || Date.now() - newest.createdAt.getTime() > ROTATE_AFTER_MS) {
        await create();
        newest = keys[0]!;
      }
      if (signer?.kid !== newest.kid) {
        const raw = newest.privateJwk.startsWith('enc:')
          ? cipherFor(newest.kid).open(newest.privateJwk, newest.kid)
          : newest.privateJwk;
        signer = { kid: newest.kid, key: (await importJWK(JSON.parse(raw) as JWK, 'EdDSA')) as CryptoKey };
      }
      return signer;
    },

    /** Makes a new signing key now (the old one is retired and stays published for a while). */
    rotate: create,

    async published(): Promise<PublicJwk[]> {
      return publishedOf(await fresh()).map((key) => key.publicJwk);
    },

    /** jose key resolver for verifying this issuer's tokens: a published key with the token's kid. */
    async verificationKey(header: JWTHeaderParameters): Promise<CryptoKey> {
      const find = () => publishedOf(keys).find((key) => key.kid === header.kid);
      await fresh();
      let found = find();
      if (found === undefined && Date.now() - loadedAt > UNKNOWN_KID_COOLDOWN_MS) {
        await load();
        found = find();
      }
      if (found === undefined) throw new errors.JWKSNoMatchingKey();
      return (await importJWK(found.publicJwk as unknown as JWK, 'EdDSA')) as CryptoKey;
    },
  };

  function cipherFor(kid: string) {
    if (!cipher) throw new SigningKeyLocked(kid, 'no-secret');
    return cipher;
  }
}
