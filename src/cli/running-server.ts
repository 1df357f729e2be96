import type { Config } from '../config/config.js';
import { DataDirLocked, type LockHolder } from '../db/data-dir-lock.js';
import type { CliIo } from './io.js';

/**
 * What the CLI does when another process holds the PGlite directory (src/db/data-dir-lock.ts):
 * a command the HTTP API can do goes through the running server, with the service key from the
 * same configuration; any other is refused in one line with exit code 2. PostgreSQL never gets
 * here: several processes may share it.
 */

export const REFUSED = 2;

/** "the server (pid 123, http://127.0.0.1:8787)" or "process 123" (a CLI command, a starting server). */
export function who(holder: LockHolder): string {
  return holder.url ? `the server (pid ${holder.pid}, ${holder.url})` : `process ${holder.pid}`;
}

/** One line on stderr: who holds the directory and what to do; returns the exit code 2. */
export function refuse(io: CliIo, locked: DataDirLocked, what: string): number {
  io.err(`tally: ${who(locked.holder)} has the embedded database open (${locked.dataDir}); ${what}\n`);
  return REFUSED;
}

/** The usual advice for a command that needs the database to itself. */
export function stopItTo(command: string): string {
  return `stop it to run \`${command}\`, or use PostgreSQL (DATABASE_URL), which several processes can share`;
}

/** A listening address as a client can dial it (a server bound to every interface answers on loopback). */
function dialable(url: string): string {
  const u = new URL(url);
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1';
  else if (u.hostname === '[::]') u.hostname = '[::1]';
  return u.origin;
}

export interface ServerAnswer {
  status: number;
  body: unknown;
}

/**
 * Calls the server holding the directory. Returns its answer, or — when there is no server to ask
 * (the holder is not serving HTTP, cannot be reached, or refuses this configuration's service key)
 * — prints one line and returns the exit code 2.
 */
export async function callServer(
  io: CliIo,
  command: string,
  locked: DataDirLocked,
  config: Config,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<ServerAnswer | number> {
  const url = locked.holder.url;
  if (!url) return refuse(io, locked, `it is not serving HTTP (yet); wait for it to finish starting, or ${stopItTo(command)}`);
  let res: Response;
  try {
    res = await fetch(dialable(url) + path, {
      method,
      headers: {
        authorization: `Bearer ${config.auth.serviceKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(60_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err instanceof Error ? err.message : String(err));
    return refuse(io, locked, `it could not be reached to run \`${command}\` (${cause}); ${stopItTo(command)}`);
  }
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  if (res.status === 401 || res.status === 403) {
    return refuse(io, locked, `it refused this configuration's service key (${res.status}); run \`${command}\` with the server's TALLY_SERVICE_KEY`);
  }
  return { status: res.status, body: parsed };
}

/** The message of an error answer ({ error: { message } }), or the status. */
export function errorMessage(answer: ServerAnswer): string {
  const b = answer.body as { error?: { message?: unknown } } | null;
  return typeof b?.error?.message === 'string' ? b.error.message : `the server answered ${answer.status}`;
}

/**
 * Runs `direct` when the directory is free; when another process holds it, `elsewhere` (route
 * through the server, or refuse). Anything else propagates.
 */
export async function directOrElse(direct: () => Promise<number>, elsewhere: (locked: DataDirLocked) => Promise<number> | number): Promise<number> {
  try {
    return await direct();
  } catch (err) {
    if (err instanceof DataDirLocked) return elsewhere(err);
    throw err;
  }
}
