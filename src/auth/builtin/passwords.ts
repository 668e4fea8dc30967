import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * scrypt parameters: N = 2^15, r = 8, p = 3 is one of OWASP's equivalent scrypt settings (as
 * strong as N = 2^17, p = 1) with 32 MiB per hash instead of 128; about 0.3 s on one core of
 * the 2-core machine this was measured on. Stored with each hash, so raising them later only
 * changes new hashes, and a login with an older hash rehashes the password.
 */
export const SCRYPT: ScryptParameters = { logN: 15, r: 8, p: 3 };
const KEY_LENGTH = 32;
const SALT_LENGTH = 16;

/** scrypt's cost: N = 2^logN, block size r, parallelism p. */
export interface ScryptParameters {
  readonly logN: number;
  readonly r: number;
  readonly p: number;
}

function derive(password: string, salt: Buffer, { logN, r, p }: ScryptParameters): Promise<Buffer> {
  const options: ScryptOptions = { N: 2 ** logN, r, p, maxmem: 256 * 2 ** 20 };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, KEY_LENGTH, options, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

/** `$scrypt$ln=15,r=8,p=3$<salt>$<hash>` (PHC string format, base64 without padding). */
export async function hashPassword(password: string, parameters: ScryptParameters = SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LENGTH);
  const hash = await derive(password, salt, parameters);
  const { logN, r, p } = parameters;
  return `$scrypt$ln=${logN},r=${r},p=${p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/;

export interface PasswordCheck {
  ok: boolean;
  /** The hash was made with weaker parameters than `current`: store a new one. */
  needsRehash: boolean;
}

/**
 * Checks a password against a stored hash in constant time (with the parameters stored in it); a
 * malformed hash never matches. `current`: the parameters new hashes are made with.
 */
export async function verifyPassword(
  password: string,
  stored: string,
  current: ScryptParameters = SCRYPT,
): Promise<PasswordCheck> {
  const match = PHC.exec(stored);
  if (!match) return { ok: false, needsRehash: false };
  const parameters = { logN: Number(match[1]), r: Number(match[2]), p: Number(match[3]) };
  const [salt, expected] = [Buffer.from(match[4]!, 'base64url'), Buffer.from(match[5]!, 'base64url')];
  const actual = await derive(password, salt, parameters);
  const ok = expected.length === actual.length && timingSafeEqual(expected, actual);
  const needsRehash = parameters.logN < current.logN || parameters.r < current.r || parameters.p < current.p;
  return { ok, needsRehash };
}
