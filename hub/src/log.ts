// The hub's logger: pino, JSON lines. Tests pass a silent one.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return destination ? pino({ level, base: undefined }, destination as unknown as pino.DestinationStream) : pino({ level, base: undefined });
}
