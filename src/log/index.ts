/**
 * Logging: one pino root logger per process, JSON lines on stdout, one child
 * per long-lived component (`{ subsys }`). Secrets are redacted by path, so a
 * password, token, key or PIN that slips into a log object prints as
 * "[redacted]". Field names are fixed in docs/logging.md.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/** Object paths whose values are never written to a log. */
export const REDACT_PATHS: readonly string[] = [
  'password', '*.password', 'pin', '*.pin', 'token', '*.token', 'jwt', '*.jwt',
  'key', '*.key', 'privateKey', '*.privateKey', 'secret', '*.secret',
  'req.headers["zt-session"]', 'req.headers.authorization', 'headers["zt-session"]', 'headers.authorization',
];

export interface LogOptions {
  level?: LevelWithSilent;
  /** Write to this fd instead of stdout (2 for stderr: CLI commands keep stdout for output). */
  fd?: number;
  /** Append to this file instead (quickstart keeps the terminal for people). */
  file?: string;
}

export function createRootLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? (process.env.ZTEDGE_LOG_LEVEL as LevelWithSilent | undefined) ?? 'info';
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // Asynchronous writes keep logging off the hot path; flushed on exit by pino.
    opts.file !== undefined ? pino.destination({ dest: opts.file, sync: false, mkdir: true }) : pino.destination({ fd: opts.fd ?? 1, sync: false }),
  );
}
