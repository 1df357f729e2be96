import nodemailer from 'nodemailer';
import type { Logger } from '../../core/logger.js';
import type { MailTransport } from './mail.js';

/** SMTP through nodemailer: `smtp://user:pass@host:port` or `smtps://…` (TLS from the first byte). */
export function smtpTransport(url: string): MailTransport {
  const transporter = nodemailer.createTransport(url);
  return {
    kind: 'smtp',
    async send(from, m) {
      await transporter.sendMail({ from, to: m.to, subject: m.subject, text: m.text });
    },
    close: () => transporter.close(),
  };
}

/**
 * No SMTP configured: the mail is written to the log (development), and its sealed body stays in
 * the outbox for the operator (GET /v1/mail/:id). Nothing leaves the machine.
 */
export function logTransport(logger: Logger): MailTransport {
  return {
    kind: 'log',
    async send(from, m) {
      logger.info({ mail: { from, to: m.to, subject: m.subject, text: m.text } }, 'mail (no SMTP_URL: written to the log, not sent)');
    },
    close: () => {},
  };
}
