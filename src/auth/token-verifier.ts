import { createHash } from 'node:crypto';
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose';
import type { JwtConfig } from '../config.js';
import { SCOPES, type AuthContext, type Scope } from './auth-context.js';
import { InvalidToken, KeySourceUnavailable } from './errors.js';
import { ownerIdFromVerifiedSubject } from './owner-id.js';

/** Verifies a compact JWT and says who it names, or throws `InvalidToken` / `KeySourceUnavailable`. */
export interface TokenVerifier {
  verify(token: string): Promise<AuthContext>;
}

/** Longer than any sane token; refused before any parsing. */
export const MAX_TOKEN_LENGTH = 8192;
const ASYMMETRIC_ALGORITHMS = ['EdDSA', 'ES256', 'RS256'];
/** No U+0000 (a PostgreSQL text cannot hold it) and no unpaired surrogate (it would be stored as U+FFFD). */
// eslint-disable-next-line no-control-regex -- U+0000 is the character refused
const STORABLE_TEXT = /^(?:[^\u0000\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])*$/;
/** Verified tokens remembered at once; the oldest is forgotten first. */
const CACHE_SIZE = 10_000;

export interface VerifierOptions
  extends
    Pick<JwtConfig, 'secret' | 'jwksUrl' | 'issuer' | 'audience' | 'clockToleranceSeconds'>,
    Partial<Pick<JwtConfig, 'maxTokenAgeSeconds' | 'requireIssuedAt'>> {
  /** How long one JWKS fetch may take before requests fail closed (ms). */
  jwksTimeoutMs?: number;
  /** Minimum time between two refetches forced by an unknown `kid` (ms). */
  jwksCooldownMs?: number;
  /** The built-in issuer: EdDSA tokens whose `iss` is `issuer`, checked with its database keys. */
  builtin?: { issuer: string; key: JWTVerifyGetKey };
}

/**
 * Remembers what verified tokens said until they expire, keyed by the SHA-256 of the token (the
 * token itself is never kept), so a client's repeated requests skip the signature check: an HMAC
 * or signature verification through WebCrypto costs more than the rest of a simple request.
 * Only successes are kept; a token is used from here no later than its `exp`. A key removed
 * from the JWKS therefore stops new tokens at once but not tokens it already verified, which
 * remain valid until their `exp` (minutes, for Better Auth's 15-minute tokens).
 */
function verifiedTokenCache() {
  const entries = new Map<string, { context: AuthContext; expiresAtMs: number }>();
  const keyOf = (token: string) => createHash('sha256').update(token).digest('base64url');
  return {
    get(token: string): AuthContext | undefined {
      const key = keyOf(token);
      const entry = entries.get(key);
      if (entry === undefined) return undefined;
      if (entry.expiresAtMs > Date.now()) return entry.context;
      entries.delete(key);
      return undefined;
    },
    set(token: string, context: AuthContext, exp: number): void {
      if (entries.size >= CACHE_SIZE) entries.delete(entries.keys().next().value!);
      entries.set(keyOf(token), { context, expiresAtMs: exp * 1000 });
    },
  };
}

/**
 * Token verification with jose. Each key source has its own algorithm allow-list: HS256 only with
 * the shared secret, EdDSA/ES256/RS256 only with keys from the JWKS URL, EdDSA only with the
 * built-in issuer's keys, so a token can never pick an algorithm its key was not meant for (no
 * `none`, no HS256 keyed with a public key).
 * `exp` and a non-empty `sub` are required (and `iat` with `requireIssuedAt`); `iss`/`aud` are
 * checked when configured; no token lives longer than `maxTokenAgeSeconds` (24 h by default).
 */
export function createTokenVerifier(options: VerifierOptions): TokenVerifier {
  const { secret, jwksUrl, issuer, audience, clockToleranceSeconds } = options;
  const maxAge = options.maxTokenAgeSeconds ?? 86_400;
  const claims: JWTVerifyOptions = {
    issuer,
    audience,
    clockTolerance: clockToleranceSeconds,
    requiredClaims: ['exp', 'sub'],
  };
  const secretKey = secret === undefined ? undefined : new TextEncoder().encode(secret);
  const jwks =
    jwksUrl === undefined
      ? undefined
      : createRemoteJWKSet(jwksUrl, {
          timeoutDuration: options.jwksTimeoutMs ?? 2000,
          cooldownDuration: options.jwksCooldownMs ?? 30_000,
          cacheMaxAge: 10 * 60_000,
        });

  async function verifyPayload(token: string): Promise<JWTPayload> {
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (cause) {
      throw new InvalidToken('The bearer token is malformed.', 'malformed', cause);
    }
    const builtin = options.builtin;
    if (alg === 'EdDSA' && builtin && decodeJwt(token).iss === builtin.issuer) {
      // Chosen by the unverified `iss`, then verified against it: a token naming this issuer is
      // checked with its keys and its `iss`/`aud` only.
      const own = { ...claims, issuer: builtin.issuer, audience: builtin.issuer, algorithms: ['EdDSA'] };
      return (await jwtVerify(token, builtin.key, own)).payload;
    }
    if (alg === 'HS256' && secretKey) {
      return (await jwtVerify(token, secretKey, { ...claims, algorithms: ['HS256'] })).payload;
    }
    if (alg !== undefined && ASYMMETRIC_ALGORITHMS.includes(alg) && jwks) {
      return (await jwtVerify(token, jwks, { ...claims, algorithms: ASYMMETRIC_ALGORITHMS })).payload;
    }
    throw new InvalidToken(
      'The token is signed with an algorithm this server does not accept.',
      `alg_not_allowed:${String(alg)}`,
    );
  }

  const cache = verifiedTokenCache();

  /**
   * What jose does not check about a token's time: `iat` in the future (forged, or a badly wrong
   * clock), missing where it is required, or further back than the maximum age; `exp` further
   * ahead than the maximum age (a token valid for years). Returns when the token stops being
   * usable (seconds): its `exp`, or earlier when it comes of age first.
   */
  function checkLifetime(payload: JWTPayload): number {
    const now = Date.now() / 1000;
    const { iat, exp } = payload as { iat?: number; exp: number }; // jose required a numeric `exp`, and checked `iat` is a number if present
    if (iat === undefined && options.requireIssuedAt)
      throw new InvalidToken('The token must say when it was issued ("iat").', 'iat_missing');
    if (iat !== undefined && iat > now + clockToleranceSeconds)
      throw new InvalidToken('The token claims to be issued in the future.', 'iat_in_future');
    if (iat !== undefined && now - iat > maxAge + clockToleranceSeconds)
      throw new InvalidToken('The token was issued too long ago.', 'token_too_old');
    if (exp - now > maxAge + clockToleranceSeconds)
      throw new InvalidToken(
        `The token is valid for longer than this server accepts (${maxAge} s).`,
        'lifetime_too_long',
      );
    return iat === undefined ? exp : Math.min(exp, iat + maxAge + clockToleranceSeconds);
  }

  return {
    async verify(token) {
      if (token.length > MAX_TOKEN_LENGTH) throw new InvalidToken('The bearer token is too large.', 'token_too_large');
      const cached = cache.get(token);
      if (cached) return cached;
      let payload: JWTPayload;
      try {
        payload = await verifyPayload(token);
      } catch (error) {
        throw translate(error);
      }
      const usableUntil = checkLifetime(payload);
      const sub = payload.sub;
      // The subject becomes the owner id of rows: text PostgreSQL must store as sent.
      if (typeof sub !== 'string' || sub.length === 0 || sub.length > 255 || !STORABLE_TEXT.test(sub)) {
        throw new InvalidToken('The token must name its subject in a non-empty "sub" claim.', 'bad_sub');
      }
      const context: AuthContext = {
        ownerId: ownerIdFromVerifiedSubject(sub),
        sub,
        scopes: scopesOf(payload),
        roles: rolesOf(payload),
        email: shortString(payload.email, 320),
        name: shortString(payload.name, 200),
        usableUntilMs: usableUntil * 1000,
      };
      cache.set(token, context, usableUntil);
      return context;
    },
  };
}

/** The `scope` claim (space-separated) narrowed to the scopes this API knows; no claim means all. */
function scopesOf(payload: JWTPayload): ReadonlySet<Scope> {
  if (payload.scope === undefined) return new Set(SCOPES);
  const granted = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
  return new Set(SCOPES.filter((scope) => granted.includes(scope)));
}

function rolesOf(payload: JWTPayload): string[] {
  const raw = Array.isArray(payload.roles) ? payload.roles : payload.role !== undefined ? [payload.role] : [];
  return raw
    .filter((role): role is string => typeof role === 'string' && role.length > 0 && role.length <= 64)
    .slice(0, 50);
}

function shortString(value: unknown, max: number): string | null {
  return typeof value === 'string' && value.length <= max ? value : null;
}

/** jose's errors, as what the caller may be told and what the log should say. */
function translate(error: unknown): Error {
  if (error instanceof InvalidToken) return error;
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) {
    return new KeySourceUnavailable(error.code, error);
  }
  if (error instanceof errors.JWTExpired) {
    return new InvalidToken('The bearer token has expired.', error.code, error);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    return new InvalidToken(
      `The token's "${error.claim}" claim is ${error.reason === 'missing' ? 'missing' : 'invalid'}.`,
      `${error.code}:${error.claim}:${error.reason}`,
      error,
    );
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new InvalidToken("The token's signature does not verify.", error.code, error);
  }
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return new InvalidToken('No published key matches the token.', error.code, error);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) {
    return new InvalidToken('The token is signed with an algorithm this server does not accept.', error.code, error);
  }
  if (
    error instanceof errors.JWSInvalid ||
    error instanceof errors.JWTInvalid ||
    error instanceof errors.JOSENotSupported
  ) {
    return new InvalidToken('The bearer token is malformed.', error.code, error);
  }
  // Anything else comes from fetching the JWKS (connection refused, non-200 answer, bad JSON):
  // no key can be checked, so no token is accepted.
  return new KeySourceUnavailable(error instanceof errors.JOSEError ? error.code : 'jwks_fetch_failed', error);
}
