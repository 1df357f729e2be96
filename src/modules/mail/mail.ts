import { Type } from 'typebox';
import { Timestamp, NullableTimestamp, iso, isoOrNull } from '../../core/schemas.js';

/** A mail to send: plain text only (links in it are the point; no HTML to sanitise). */
export interface MailMessage {
  to: string;
  /** What kind of mail (`auth.password_reset`): for the outbox list and for tests, not for rendering. */
  template: string;
  subject: string;
  text: string;
  userId: string | null;
}

export const MAIL_STATUSES = ['pending', 'sent', 'failed'] as const;
export type MailStatus = (typeof MAIL_STATUSES)[number];

/** Where a mail goes: an SMTP server, or (no SMTP_URL) the log, for development. */
export interface MailTransport {
  readonly kind: 'smtp' | 'log';
  send(from: string, message: { to: string; subject: string; text: string }): Promise<void>;
  close(): void;
}

export interface MailRow {
  id: string;
  to_address: string;
  template: string;
  subject: string;
  body_enc: string | null;
  key_id: string | null;
  user_id: string | null;
  status: string;
  transport: string | null;
  attempts: number;
  last_error: string | null;
  sent_at: Date | null;
  created_at: Date;
}

export const Mail = Type.Object({
  id: Type.String(),
  to: Type.String(),
  template: Type.String(),
  subject: Type.String(),
  user_id: Type.Union([Type.String(), Type.Null()]),
  status: Type.Union(MAIL_STATUSES.map((s) => Type.Literal(s))),
  transport: Type.Union([Type.Literal('smtp'), Type.Literal('log'), Type.Null()]),
  attempts: Type.Integer(),
  last_error: Type.Union([Type.String(), Type.Null()]),
  sent_at: NullableTimestamp,
  created_at: Timestamp,
});

export const mailToApi = (r: MailRow) => ({
  id: r.id,
  to: r.to_address,
  template: r.template,
  subject: r.subject,
  user_id: r.user_id,
  status: r.status as MailStatus,
  transport: r.transport as 'smtp' | 'log' | null,
  attempts: r.attempts,
  last_error: r.last_error,
  sent_at: isoOrNull(r.sent_at),
  created_at: iso(r.created_at),
});

/** The associated data a body is sealed with: the row's id, so a body cannot be moved to another mail. */
export const mailAad = (id: string) => `mail_outbox\n${id}`;
