import type { Executor } from '../../db/database.js';
import type { PageRequest } from '../../core/paging.js';
import { errors } from '../../core/errors.js';
import { toPage } from '../../core/paging.js';
import { newId } from '../../lib/ids.js';
import type { SecretBox } from '../../lib/secret-box.js';
import type { QueueService } from '../queue/queue.service.js';
import { mailAad, type MailMessage, type MailTransport, mailToApi } from './mail.js';
import { mailFind, mailInsert, mailList, mailMarkAttemptFailed, mailMarkSent } from './mail.repository.js';

export const MAIL_JOB = 'mail.send';

/**
 * The outbox: `send` writes the mail (body sealed) and its delivery job in the caller's transaction,
 * so a mail exists exactly when the change that wants it commits; the queue delivers it at least
 * once, retrying with backoff (docs/auth.md, "Mail").
 */
export class MailService {
  constructor(
    private readonly box: SecretBox,
    private readonly queue: QueueService,
    private readonly transport: MailTransport,
    private readonly from: string,
    private readonly now: () => Date,
  ) {
    queue.register(MAIL_JOB, async (job, ctx) => {
      const mailId = (job.input as { mail_id?: unknown }).mail_id;
      if (typeof mailId !== 'string') throw new Error('mail.send: no mail_id');
      return this.deliver(ctx.db, mailId, job.attempts >= job.maxAttempts);
    });
  }

  get transportKind(): 'smtp' | 'log' {
    return this.transport.kind;
  }

  async send(trx: Executor, message: MailMessage): Promise<string> {
    const id = newId('mail');
    await mailInsert(trx, {
      id,
      to_address: message.to,
      template: message.template,
      subject: message.subject,
      body_enc: this.box.seal(message.text, mailAad(id)),
      key_id: this.box.keyId,
      user_id: message.userId,
    });
    await this.queue.enqueue(trx, { type: MAIL_JOB, input: { mail_id: id }, maxAttempts: 10, dedupeKey: `mail:${id}` });
    return id;
  }

  /** One delivery attempt. A mail already sent (a retried job) is not sent again. */
  private async deliver(db: Executor, id: string, lastAttempt: boolean): Promise<{ status: string }> {
    const row = await mailFind(db, id);
    if (!row || row.status !== 'pending') return { status: row?.status ?? 'missing' };
    const text = row.body_enc ? this.box.open(row.body_enc, mailAad(id)) : null;
    if (text === null) {
      await mailMarkAttemptFailed(db, id, 'the body cannot be opened with the configured encryption keys', true);
      return { status: 'failed' };
    }
    try {
      await this.transport.send(this.from, { to: row.to_address, subject: row.subject, text });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      await mailMarkAttemptFailed(db, id, message, lastAttempt);
      throw err; // the queue retries with backoff
    }
    await mailMarkSent(db, id, this.transport.kind, this.now());
    return { status: 'sent' };
  }

  async list(db: Executor, page: PageRequest, filter: { to?: string; userId?: string; template?: string }) {
    return toPage(await mailList(db, page, filter), page.limit, mailToApi);
  }

  /**
   * One mail; its text only while Tally still holds it — mails that went to the log (no SMTP), so
   * an operator in development can follow a link. Mail handed to SMTP keeps no body.
   */
  async get(db: Executor, id: string) {
    const row = await mailFind(db, id);
    if (!row) throw errors.notFound('mail', id);
    const text = row.body_enc && row.transport === 'log' ? this.box.open(row.body_enc, mailAad(id)) : null;
    return { ...mailToApi(row), text };
  }
}
