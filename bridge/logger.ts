/** pino, with every secret-bearing field redacted wherever it appears. */
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'password',
  'token',
  '*.password',
  '*.token',
  '*.*.password',
  '*.*.token',
  'asterisk.password',
  'msg.password',
  'msg.token',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { app: 'confmux' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    destination,
  );
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/**
 * Logs `msg` with `fields` first, then `extra`: the same line a pino child logger with `fields` as
 * its bindings would write (pino puts a child's bindings before the call's own fields). For what
 * lives as long as a terminal or a call: a child logger per terminal and per call held about a
 * kilobyte of heap each for their whole life (its own prototype object, hidden classes and
 * rendered bindings); this allocates only while it logs, and nothing when the level is off.
 */
export function logWith(log: Logger, level: LogLevel, fields: Record<string, unknown>, msg: string, extra?: Record<string, unknown>): void {
  if (!log.isLevelEnabled(level)) return;
  log[level](extra === undefined ? fields : { ...fields, ...extra }, msg);
}
