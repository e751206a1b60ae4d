/** Small helpers shared by the CLI commands: typed option parsing on top of node:util's parseArgs. */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** An error the CLI prints as one line (no stack trace) before exiting with `exitCode`. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse<O extends Options>(argv: string[], options: O, usage: string) {
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if ((parsed.values as { help?: boolean }).help) {
      console.log(usage);
      process.exit(0);
    }
    return parsed;
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\n${usage}`, 2);
  }
}

export function intOption(value: string | undefined, name: string, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new CliError(`--${name} must be an integer ≥ ${min} (got "${value}")`, 2);
  return n;
}

export function floatOption(
  value: string | undefined,
  name: string,
  fallback: number,
  min = -Infinity,
  max = Infinity,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max)
    throw new CliError(`--${name} must be a number in [${min}, ${max}] (got "${value}")`, 2);
  return n;
}

/** A one-line progress display on stderr (a bar when stderr is a TTY, plain lines otherwise). */
export class Progress {
  private lastLine = '';
  private lastPrint = 0;
  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  update(done: number, total: number, detail = ''): void {
    const now = Date.now();
    if (done < total && now - this.lastPrint < 200) return;
    this.lastPrint = now;
    const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
    if (this.stream.isTTY) {
      const width = 24;
      const filled = Math.round((width * pct) / 100);
      const line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct}% ${detail}`;
      this.stream.write(`\r${line.padEnd(this.lastLine.length)}`);
      this.lastLine = line;
      if (done >= total) this.stream.write('\n');
    } else if (done >= total || pct % 10 === 0) {
      const line = `${this.label}: ${pct}% ${detail}`;
      if (line !== this.lastLine) this.stream.write(`${line}\n`);
      this.lastLine = line;
    }
  }
}
