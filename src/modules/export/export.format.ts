import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The export's format (docs/export.md): its name, version and manifest. */
export const EXPORT_FORMAT = 'tally-export';
export const EXPORT_VERSION = 1;

export interface ExportManifest {
  format: typeof EXPORT_FORMAT;
  version: number;
  tally_version: string;
  /** The migrations applied to the exported database, in order. */
  migrations: string[];
  exported_at: string;
  tables: { name: string; file: string; rows: number; columns: string[] }[];
}

export function isExportDir(path: string): boolean {
  return existsSync(join(path, 'manifest.json'));
}
