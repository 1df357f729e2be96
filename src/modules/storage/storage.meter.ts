import { sql } from 'kysely';
import type { Db } from '../../db/database.js';
import { usageFold } from './storage.repository.js';

/**
 * How stored bytes reach billing: one usage event per user and day (the billing module's
 * POST /v1/events path, wired by the composition root), so plans and cost models price storage
 * like any other metric.
 */
export interface StorageUsageRecorder {
  /** Records one event; a refusal (no allowance, no credits) is an answer, not a fault. */
  record(event: {
    userId: string;
    /** A workspace's folder: its pool pays, `userId` (the workspace's owner) is the acting member. */
    workspaceId?: string;
    metric: string;
    quantity: number;
    actionHash: string;
    metadata: Record<string, unknown>;
  }): Promise<{ ok: boolean; code?: string }>;
}

export const STORAGE_METRIC = 'storage_mb';
const MIB = 1_048_576;

/**
 * Meters storage as `storage_mb`: once a day, each owner's stored bytes (objects in folders they
 * own, all buckets) rounded up to whole MiB. A user's folders bill the user; a workspace's folders
 * bill the workspace's pool, with its owner as the acting member (usage events name a member). The
 * event's action_hash is `storage_mb:<owner>:<day>`, so a day is charged once however many
 * processes or runs record it: MiB-days, the unit storage is usually priced in.
 */
export class StorageMeter {
  private lastDay: string | null = null;

  constructor(
    private readonly db: Db,
    private readonly recorder: StorageUsageRecorder,
    private readonly now: () => Date,
    /** Tally's schema (storage_usage_fold is called by its qualified name). */
    private readonly schema: string,
  ) {}

  /** The scheduler's tick: meters the current UTC day once per process. */
  async tick(): Promise<{ users: number; recorded: number; refused: number } | null> {
    const day = this.now().toISOString().slice(0, 10);
    if (day === this.lastDay) return null;
    const result = await this.meterDay(day);
    this.lastDay = day;
    return result;
  }

  async meterDay(day: string): Promise<{ users: number; workspaces: number; recorded: number; refused: number }> {
    // Buckets without a quota gather their bytes-used changes apart (migration 0054): in first.
    await usageFold(this.db, this.schema, null, null);
    const users = await this.db
      .selectFrom('storage_usage')
      .innerJoin('users', 'users.id', 'storage_usage.owner_id')
      .select(['storage_usage.owner_id as user_id', sql<string>`sum(storage_usage.used_bytes)::text`.as('bytes')])
      .groupBy('storage_usage.owner_id')
      .execute();
    const workspaces = await this.db
      .selectFrom('storage_usage')
      .innerJoin('workspaces', 'workspaces.id', 'storage_usage.owner_id')
      .select(['storage_usage.owner_id as workspace_id', 'workspaces.owner_id as user_id', sql<string>`sum(storage_usage.used_bytes)::text`.as('bytes')])
      .groupBy(['storage_usage.owner_id', 'workspaces.owner_id'])
      .execute();
    let recorded = 0;
    let refused = 0;
    const owners = [...users.map((r) => ({ ...r, workspace_id: undefined })), ...workspaces];
    for (const r of owners) {
      const bytes = Number(r.bytes);
      if (bytes <= 0) continue;
      const owner = r.workspace_id ?? r.user_id;
      const outcome = await this.recorder.record({
        userId: r.user_id,
        ...(r.workspace_id !== undefined ? { workspaceId: r.workspace_id } : {}),
        metric: STORAGE_METRIC,
        quantity: Math.ceil(bytes / MIB),
        actionHash: `${STORAGE_METRIC}:${owner}:${day}`,
        metadata: { bytes, day },
      });
      if (outcome.ok) recorded++;
      else refused++;
    }
    return { users: users.length, workspaces: workspaces.length, recorded, refused };
  }
}
