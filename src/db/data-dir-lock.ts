import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * One process at a time on a PGlite data directory. Two PGlite instances on one directory do not
 * share anything: each overwrites the other's pages (a CLI command next to a running server printed
 * PGlite's source and `Aborted()`, or wrote an API key the server never saw). Whoever opens the
 * directory first creates `<dir>.lock` exclusively, holding who it is and, for a server, where it
 * listens; a second opener gets DataDirLocked (with that holder) before PGlite is ever started.
 *
 * A lock whose process is gone (killed, crashed) is taken over. The lock lives next to the data
 * directory (`.tally/pgdata.lock`), not inside it: PGlite's folder is PostgreSQL's to manage.
 */
export interface LockHolder {
  pid: number;
  started_at: string;
  /** The base URL the holder serves HTTP on (`tally start`, once listening); null otherwise. */
  url: string | null;
}

export class DataDirLocked extends Error {
  constructor(
    readonly dataDir: string,
    readonly lockFile: string,
    readonly holder: LockHolder,
  ) {
    super(
      `the embedded database ${dataDir} is open in another process (pid ${holder.pid}${holder.url ? `, serving ${holder.url}` : ''}); ` +
        `two processes must never open one PGlite directory (lock ${lockFile})`,
    );
    this.name = 'DataDirLocked';
  }
}

export interface DataDirLock {
  readonly file: string;
  /** Records where this process serves HTTP, for the CLI to route through it. */
  announce(url: string): void;
  /** Removes the lock (idempotent; also done on process exit). */
  release(): void;
}

/** Lock files this process holds: a recorded pid equal to ours but not in here is a previous life's. */
const held = new Set<string>();

export function lockFileOf(dataDir: string): string {
  return join(dirname(dataDir), `${basename(dataDir)}.lock`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else — alive.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(file: string): LockHolder | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const v = JSON.parse(text) as Partial<LockHolder>;
    if (typeof v.pid === 'number' && Number.isInteger(v.pid) && v.pid > 0) {
      return { pid: v.pid, started_at: String(v.started_at ?? ''), url: typeof v.url === 'string' ? v.url : null };
    }
  } catch {
    // A lock half-written by a process killed at that instant: unreadable, so nobody's.
  }
  return { pid: 0, started_at: '', url: null };
}

/**
 * The live holder of `dataDir`'s lock, or null when nobody holds it (no file, or its process is
 * gone — including a recorded pid equal to ours that this process does not hold: after a container
 * restart the server is often pid 1 again).
 */
export function lockHolder(dataDir: string): LockHolder | null {
  const file = lockFileOf(dataDir);
  const holder = readHolder(file);
  if (!holder || holder.pid === 0) return null;
  if (holder.pid === process.pid) return held.has(file) ? holder : null;
  return alive(holder.pid) ? holder : null;
}

/** Takes the lock on `dataDir`, or throws DataDirLocked naming the live holder. */
export function acquireDataDirLock(dataDir: string): DataDirLock {
  const file = lockFileOf(dataDir);
  const me: LockHolder = { pid: process.pid, started_at: new Date().toISOString(), url: null };
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(file, JSON.stringify(me) + '\n', { flag: 'wx', mode: 0o600 });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = lockHolder(dataDir);
    if (holder) throw new DataDirLocked(dataDir, file, holder);
    if (attempt >= 3) throw new Error(`could not take the lock ${file}: it keeps coming back`);
    // Stale: its process is gone. Move it aside (atomic) and try the exclusive create again; if
    // another process took it over first, our create fails and we read the new, live holder.
    const aside = `${file}.stale.${process.pid}`;
    try {
      renameSync(file, aside);
      unlinkSync(aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  held.add(file);
  const release = () => {
    if (!held.delete(file)) return;
    process.off('exit', release);
    // Only our own lock: never remove one a later process wrote.
    if (readHolder(file)?.pid !== process.pid) return;
    try {
      unlinkSync(file);
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  return {
    file,
    announce(url: string) {
      if (!held.has(file)) return;
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify({ ...me, url }) + '\n', { mode: 0o600 });
      renameSync(tmp, file);
    },
    release,
  };
}
