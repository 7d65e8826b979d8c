/**
 * The shape of a CLI command and the argument parsing they share
 * (node:util parseArgs: no dependency, strict, with `--help` everywhere).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EdgeError } from '../errors.js';

export interface Command {
  name: string;
  summary: string;
  /** Full help text, printed by `ztedge <name> --help`. */
  help: string;
  run(argv: string[]): Promise<number>;
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses argv strictly; unknown flags get a usage error that points to --help. */
export function parse<O extends Options>(argv: string[], options: O, command: string): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: true, strict: true });
    return { values: r.values as Record<string, string | boolean | string[] | undefined>, positionals: r.positionals };
  } catch (err) {
    throw new EdgeError('ERR_USAGE', `${(err as Error).message}\nRun "ztedge ${command} --help" for usage.`);
  }
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Output for people goes to stdout; logs go to stderr for CLI commands (stdout for daemons). */
export function out(line = ''): void {
  process.stdout.write(line + '\n');
}

/** Resolves on the first SIGINT or SIGTERM (logging which), for commands that run until stopped. */
export function untilStopSignal(log?: { info(obj: object, msg: string): void }): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      log?.info({ signal }, 'stopping');
      resolve(signal);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
