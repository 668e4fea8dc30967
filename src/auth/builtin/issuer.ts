import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, type JWTHeaderParameters } from 'jose';
import { sql, type Kysely } from 'kysely';
import { backgroundPurge } from '../../db/purge.js';
import { DEFAULT_LOGIN_THROTTLE, type LoginThrottle } from '../../config.js';
import type { DB } from '../../db/schema.js';
import type { Logger } from '../../logger.js';
import { SCOPES } from '../auth-context.js';
import { EmailTaken, InvalidCredentials, InvalidRefreshToken, LoginThrottled } from './errors.js';
import { hashPassword, SCRYPT, verifyPassword, type ScryptParameters } from './passwords.js';
import { signingKeys, type SigningKeys } from './signing-keys.js';

export interface BuiltinIssuerOptions {
  /** `iss` and `aud` of the tokens. */
  issuer: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** Failed logins allowed per (email, IP), per email and per IP in a window; DEFAULT_LOGIN_THROTTLE when not given. */
  loginThrottle?: LoginThrottle;
  /**
   * scrypt's cost for new password hashes; SCRYPT (OWASP's, about 0.3 s of a core) when not given,
   * as every server process runs it. The test servers pass a cheap one (a hash in milliseconds),
   * as Rails' test environment lowers bcrypt's cost: what they test is the flow, not the work factor.
   */
  passwordHashing?: ScryptParameters;
}

export interface TokenPair {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  refresh_token_expires_in: number;
  scope: string;
}

const SCOPE = SCOPES.join(' ');
const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

/** NFC and lower-case: one spelling per address, so the unique index is the rule. */
export const normaliseEmail = (email: string): string => email.normalize('NFC').toLowerCase();

export type BuiltinIssuer = ReturnType<typeof builtinIssuer>;

/**
 * The API as its own identity provider: accounts with scrypt-hashed passwords, EdDSA access
 * tokens signed with the database's keys, and single-use refresh tokens in families (one per
 * login) so that a reused token revokes the whole login.
 */
export function builtinIssuer(db: Kysely<DB>, keys: SigningKeys, options: BuiltinIssuerOptions, logger?: Logger) {
  const { issuer, accessTokenTtlSeconds, refreshTokenTtlSeconds } = options;
  /*
   * Failed logins are counted per (email, client IP), per email and per client IP over a window,
   * and refused once a key has reached its budget within it (LOGIN_* in config.ts). Per (email, IP),
   * so guessing from one address stops after a few tries while the account's owner, elsewhere, can
   * still log in: a stranger cannot lock anyone out by failing on purpose. Per email in all, a
   * backstop against guessing spread over many addresses. Per IP, whatever the email.
   */
  const { windowSeconds, maxPerEmailAndIp, maxPerEmail, maxPerIp } = options.loginThrottle ?? DEFAULT_LOGIN_THROTTLE;
  const hashing = options.passwordHashing ?? SCRYPT;
  // Checked when the email is unknown, so that answer takes as long as a wrong password.
  const decoyHash = hashPassword(randomBytes(16).toString('hex'), hashing);

  async function issue(
    user: { id: string; email: string },
    familyId: string = randomUUID(),
    trx: Kysely<DB> = db,
  ): Promise<TokenPair> {
    const refreshToken = `rt_${randomBytes(32).toString('base64url')}`;
    await trx
      .insertInto('refresh_tokens')
      .values({
        token_hash: sha256(refreshToken),
        family_id: familyId,
        user_id: user.id,
        expires_at: new Date(Date.now() + refreshTokenTtlSeconds * 1000),
      })
      .execute();
    const signer = await keys.current();
    const accessToken = await new SignJWT({ scope: SCOPE, email: user.email })
      .setProtectedHeader({ alg: 'EdDSA', kid: signer.kid, typ: 'JWT' })
      .setSubject(user.id)
      .setIssuer(issuer)
      .setAudience(issuer)
      .setIssuedAt()
      .setExpirationTime(`${accessTokenTtlSeconds}s`)
      .setJti(randomUUID())
      .sign(signer.key);
    return {
      access_token: accessToken,
      token_type: 'Bearer',
      expires_in: accessTokenTtlSeconds,
      refresh_token: refreshToken,
      refresh_token_expires_in: refreshTokenTtlSeconds,
      scope: SCOPE,
    };
  }

  /**
   * Forgets failure counters whose window has passed and refresh tokens that have expired (a
   * deleted one is refused as unknown, as it was as expired), at most once an hour per process,
   * in the background.
   */
  const purgeStale = backgroundPurge(3600_000, () =>
    Promise.all([
      db
        .deleteFrom('login_failures')
        .where('window_started_at', '<', new Date(Date.now() - windowSeconds * 1000))
        .execute(),
      db.deleteFrom('refresh_tokens').where('expires_at', '<', new Date()).execute(),
    ]),
  );

  /**
   * Counts a login attempt against `key` before the password is checked (so concurrent guesses
   * cannot overrun the budget) and returns the attempts in the current window and its age.
   */
  async function countAttempt(key: string): Promise<{ attempts: number; windowAgeSeconds: number }> {
    const { rows } = await sql<{ failures: number; age: number }>`
      insert into login_failures as f (key, failures, window_started_at) values (${key}, 1, now())
      on conflict (key) do update set
        failures = case when f.window_started_at > now() - make_interval(secs => ${windowSeconds}) then f.failures + 1 else 1 end,
        window_started_at = case when f.window_started_at > now() - make_interval(secs => ${windowSeconds}) then f.window_started_at else now() end
      returning failures, extract(epoch from now() - window_started_at)::float8 as age`.execute(db);
    return { attempts: rows[0]!.failures, windowAgeSeconds: rows[0]!.age };
  }

  return {
    async register(email: string, password: string): Promise<TokenPair> {
      const normalised = normaliseEmail(email);
      const passwordHash = await hashPassword(password, hashing);
      const id = randomUUID();
      const inserted = await db
        .insertInto('users')
        .values({ id, email: normalised, password_hash: passwordHash })
        .onConflict((oc) => oc.column('email').doNothing())
        .returning('id')
        .executeTakeFirst();
      if (inserted === undefined) throw new EmailTaken();
      logger?.info('account registered', { user_id: id });
      return issue({ id, email: normalised });
    },

    /**
     * The same 401 for an unknown email, a wrong password and a disabled account, after the same
     * scrypt work. Every attempt counts against (email, IP), the email and the IP first; a success
     * clears its (email, IP) count and takes itself off the other two, so only failures accumulate.
     */
    async login(email: string, password: string, clientIp: string): Promise<TokenPair> {
      purgeStale();
      const normalised = normaliseEmail(email);
      const emailIpKey = `email-ip:${sha256(`${normalised}\n${clientIp}`)}`;
      const emailKey = `email:${sha256(normalised)}`;
      const ipKey = `ip:${clientIp}`;
      const [byEmailIp, byEmail, byIp] = await Promise.all([
        countAttempt(emailIpKey),
        countAttempt(emailKey),
        countAttempt(ipKey),
      ]);
      const over = [
        byEmailIp.attempts > maxPerEmailAndIp && byEmailIp,
        byEmail.attempts > maxPerEmail && byEmail,
        byIp.attempts > maxPerIp && byIp,
      ].filter((x) => x !== false);
      if (over.length > 0) {
        const retryAfter = Math.max(1, Math.ceil(windowSeconds - Math.min(...over.map((o) => o.windowAgeSeconds))));
        logger?.warn('login throttled', {
          email_digest: emailKey.slice(6, 22),
          client_ip: clientIp,
          retry_after: retryAfter,
        });
        throw new LoginThrottled(retryAfter);
      }

      const user = await db
        .selectFrom('users')
        .select(['id', 'email', 'password_hash', 'disabled_at'])
        .where('email', '=', normalised)
        .executeTakeFirst();
      const check = await verifyPassword(password, user?.password_hash ?? (await decoyHash), hashing);
      const failure =
        user === undefined
          ? 'unknown_email'
          : !check.ok
            ? 'wrong_password'
            : user.disabled_at !== null
              ? 'disabled'
              : undefined;
      if (failure !== undefined) {
        logger?.warn('login failed', { reason: failure, user_id: user?.id ?? null, client_ip: clientIp });
        throw new InvalidCredentials(failure);
      }
      await db.deleteFrom('login_failures').where('key', '=', emailIpKey).execute();
      await db
        .updateTable('login_failures')
        .set((eb) => ({ failures: eb('failures', '-', 1) }))
        .where('key', 'in', [emailKey, ipKey])
        .execute();
      if (check.needsRehash) {
        await db
          .updateTable('users')
          .set({ password_hash: await hashPassword(password, hashing) })
          .where('id', '=', user!.id)
          .execute();
      }
      return issue(user!);
    },

    /**
     * One use per refresh token. A used or revoked one revokes its family (the token was stolen,
     * or the client is confused: either way that login ends), as does a disabled account.
     */
    async refresh(refreshToken: string): Promise<TokenPair> {
      purgeStale();
      type Outcome =
        { pair: TokenPair } | { failed: InvalidRefreshToken['reason']; row?: { user_id: string; family_id: string } };
      const outcome = await db.transaction().execute(async (trx): Promise<Outcome> => {
        const row = await trx
          .selectFrom('refresh_tokens')
          .innerJoin('users', 'users.id', 'refresh_tokens.user_id')
          .select([
            'refresh_tokens.token_hash',
            'family_id',
            'user_id',
            'expires_at',
            'used_at',
            'revoked_at',
            'users.email',
            'users.disabled_at',
          ])
          .where('token_hash', '=', sha256(refreshToken))
          .forUpdate('refresh_tokens')
          .executeTakeFirst();
        if (row === undefined) return { failed: 'unknown' };
        if (row.revoked_at !== null) return { failed: 'revoked', row };
        const failed: InvalidRefreshToken['reason'] | undefined =
          row.used_at !== null
            ? 'reused'
            : row.disabled_at !== null
              ? 'account_disabled'
              : row.expires_at <= new Date()
                ? 'expired'
                : undefined;
        if (failed !== undefined) {
          if (failed !== 'expired') await revokeFamily(trx, row.family_id);
          return { failed, row };
        }
        await trx
          .updateTable('refresh_tokens')
          .set({ used_at: new Date() })
          .where('token_hash', '=', row.token_hash)
          .execute();
        return { pair: await issue({ id: row.user_id, email: row.email }, row.family_id, trx) };
      });
      if ('pair' in outcome) return outcome.pair;
      const context = {
        reason: outcome.failed,
        user_id: outcome.row?.user_id ?? null,
        family_id: outcome.row?.family_id ?? null,
      };
      if (outcome.failed === 'reused') logger?.warn('refresh token reused; its login is revoked', context);
      else logger?.warn('refresh refused', context);
      throw new InvalidRefreshToken(outcome.failed);
    },

    /** Ends the login the refresh token belongs to; silent for a token that is not live. */
    async logout(refreshToken: string): Promise<void> {
      const row = await db
        .selectFrom('refresh_tokens')
        .select('family_id')
        .where('token_hash', '=', sha256(refreshToken))
        .executeTakeFirst();
      if (row) await revokeFamily(db, row.family_id);
    },

    jwks: async () => ({ keys: await keys.published() }),
  };
}

function revokeFamily(db: Kysely<DB>, familyId: string) {
  return db
    .updateTable('refresh_tokens')
    .set({ revoked_at: new Date() })
    .where('family_id', '=', familyId)
    .where('revoked_at', 'is', null)
    .execute();
}

/**
 * The built-in issuer wired up: its signing keys, the issuer, and what the token verifier needs
 * to accept its tokens.
 */
export function builtinAuth(
  db: Kysely<DB>,
  config: BuiltinIssuerOptions & { keyEncryptionSecret?: string },
  logger?: Logger,
) {
  const keys = signingKeys(db, { encryptionSecret: config.keyEncryptionSecret });
  return {
    keys,
    issuer: builtinIssuer(db, keys, config, logger),
    verification: { issuer: config.issuer, key: (header: JWTHeaderParameters) => keys.verificationKey(header) },
  };
}
