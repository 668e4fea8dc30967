import pg from 'pg';

/**
 * Whether the settings a client sends when it connects (startup parameters, as the app sends its
 * server-side timeouts) reach the PostgreSQL session behind `url`. They do on a direct connection.
 * Through a pooler in transaction mode they cannot (one server connection serves many clients in
 * turn): PgBouncer ignores them (ignore_startup_parameters) and its server connections carry the
 * timeouts it was configured with instead (scripts/pgbouncer.sh, README "Behind a connection pooler").
 * A failure to connect is thrown, never taken for "no".
 */
export async function startupParametersReachServer(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, statement_timeout: 4321 });
  await client.connect();
  try {
    const { rows } = await client.query<{ value: string }>("select current_setting('statement_timeout') as value");
    return rows[0]!.value === '4321ms';
  } finally {
    await client.end();
  }
}
