import { FileStore } from '@tus/file-store';

/** How long a resumable upload may stay unfinished: then its pieces and its reservation are swept. */
export const RESUMABLE_TTL_MS = 24 * 3600_000;

/**
 * Where resumable uploads gather their pieces (the tus datastore). The sweeper removes an upload
 * whose reservation expired, and whatever else the datastore finds past its expiry.
 */
export interface StagedUploads {
  remove(id: string): Promise<void>;
  /** Unfinished uploads past their expiry (by the datastore's own clock); answers how many went. */
  deleteExpired(): Promise<number>;
}

/** The local-disk datastore, with expiry: tus announces `Upload-Expires` and refuses pieces after it (410). */
export function createStaging(directory: string): FileStore {
  return new FileStore({ directory, expirationPeriodInMilliseconds: RESUMABLE_TTL_MS });
}
