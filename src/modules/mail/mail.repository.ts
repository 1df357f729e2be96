import type { Executor } from '../../db/database.js';
import { cursorBefore, cursorColumn } from '../../db/paging.js';
import type { PageRequest } from '../../core/paging.js';
import type { MailRow } from './mail.js';

export interface MailInsert {
  id: string;
  to_address: string;
  template: string;
  subject: string;
  body_enc: string;
  key_id: string;
  user_id: string | null;
}

export async function mailInsert(db: Executor, row: MailInsert): Promise<void> {
  await db.insertInto('mail_outbox').values(row).execute();
}

export async function mailFind(db: Executor, id: string): Promise<MailRow | undefined> {
  return db.selectFrom('mail_outbox').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Delivered: the SMTP server has it, so its sealed body (a reset link, say) is dropped. */
export async function mailMarkSent(db: Executor, id: string, transport: 'smtp' | 'log', at: Date): Promise<void> {
  await db
    .updateTable('mail_outbox')
    .set((eb) => ({
      status: 'sent',
      transport,
      sent_at: at,
      attempts: eb('attempts', '+', 1),
      last_error: null,
      ...(transport === 'smtp' ? { body_enc: null, key_id: null } : {}),
    }))
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .execute();
}

/** A failed attempt; `final` when the queue will not retry, which also drops the body. */
export async function mailMarkAttemptFailed(db: Executor, id: string, error: string, final: boolean): Promise<void> {
  await db
    .updateTable('mail_outbox')
    .set((eb) => ({
      attempts: eb('attempts', '+', 1),
      last_error: error.slice(0, 2000),
      ...(final ? { status: 'failed', body_enc: null, key_id: null } : {}),
    }))
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .execute();
}

export async function mailList(db: Executor, page: PageRequest, filter: { to?: string; userId?: string; template?: string }) {
  let q = db.selectFrom('mail_outbox').selectAll().select(cursorColumn('mail_outbox').as('cursor_us'));
  if (filter.to) q = q.where((eb) => eb(eb.fn('lower', ['to_address']), '=', filter.to?.toLowerCase() ?? ''));
  if (filter.userId) q = q.where('user_id', '=', filter.userId);
  if (filter.template) q = q.where('template', '=', filter.template);
  if (page.after) q = q.where(cursorBefore('mail_outbox', page.after));
  return (await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit + 1).execute()) as (MailRow & { cursor_us: number })[];
}

/** For `tally secrets rotate`: bodies sealed with another key. */
export async function mailSealedNotUnder(db: Executor, keyId: string) {
  return db.selectFrom('mail_outbox').select(['id', 'body_enc']).where('key_id', '<>', keyId).where('body_enc', 'is not', null).execute();
}
