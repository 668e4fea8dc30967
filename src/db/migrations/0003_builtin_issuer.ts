import { sql, type Kysely } from 'kysely';
import type { Migration } from 'kysely/migration';

/**
 * The built-in issuer (AUTH_BUILTIN):
 * - `users`: one row per account; `email` is stored normalised (NFC, lower-case) so the
 *   unique constraint is the uniqueness rule; `password_hash` is a PHC-style scrypt string that
 *   carries its own parameters; `disabled_at` stops logins and refreshes.
 * - `refresh_tokens`: only the SHA-256 of each token; every login starts a `family_id`, every
 *   refresh marks its token used and adds the next one to the family; reuse or logout revokes
 *   the family. Deleting a user deletes their tokens.
 * - `signing_keys`: Ed25519 keys; the private JWK is AES-256-GCM encrypted when
 *   KEY_ENCRYPTION_SECRET is set.
 * - `login_failures`: failed-login counters per email digest and per client IP.
 */
export const builtinIssuer: Migration = {
  async up(db: Kysely<unknown>) {
    await sql`
      create table users (
        id uuid primary key,
        email text not null unique check (length(email) between 3 and 254),
        password_hash text not null,
        created_at timestamptz not null default now(),
        disabled_at timestamptz
      )`.execute(db);
    await sql`
      create table refresh_tokens (
        token_hash text primary key,
        family_id uuid not null,
        user_id uuid not null references users (id) on delete cascade,
        created_at timestamptz not null default now(),
        expires_at timestamptz not null,
        used_at timestamptz,
        revoked_at timestamptz
      )`.execute(db);
    await sql`create index refresh_tokens_family_idx on refresh_tokens (family_id)`.execute(db);
    await sql`create index refresh_tokens_user_idx on refresh_tokens (user_id)`.execute(db);
    await sql`
      create table signing_keys (
        kid text primary key,
        public_jwk jsonb not null,
        private_jwk text not null,
        created_at timestamptz not null default now()
      )`.execute(db);
    await sql`
      create table login_failures (
        key text primary key,
        failures integer not null,
        window_started_at timestamptz not null
      )`.execute(db);
  },
  async down(db: Kysely<unknown>) {
    for (const table of ['login_failures', 'signing_keys', 'refresh_tokens', 'users']) {
      await sql`drop table ${sql.id(table)}`.execute(db);
    }
  },
};
