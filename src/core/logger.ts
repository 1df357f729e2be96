import type { BaseLogger } from 'pino';

/** What the domain logs through: the part of pino's interface that Fastify's loggers also have. */
export type Logger = Pick<BaseLogger, 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace'>;
