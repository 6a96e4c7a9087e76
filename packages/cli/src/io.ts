// Output: results on stdout, errors, warnings and live status on stderr.

export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function err(text: string): void {
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** One JSON document on stdout (the only thing on stdout with --json). */
export function printJson(doc: unknown): void {
  out(JSON.stringify(doc, null, 2));
}

/** One JSON value per line (JSON Lines). */
export function printJsonLine(doc: unknown): void {
  out(JSON.stringify(doc));
}

/** Resolves when what was written to stdout and stderr has been handed to the OS. */
export function flushed(): Promise<void> {
  const drain = (s: NodeJS.WriteStream) =>
    new Promise<void>((resolve) => {
      if (s.destroyed || !s.writable) return resolve();
      s.write('', () => resolve());
    });
  return Promise.all([drain(process.stdout), drain(process.stderr)]).then(() => undefined);
}

/** The terminal's width in columns: stdout's when it is a terminal, else COLUMNS when set; undefined otherwise (a pipe gets whole lines). */
export function terminalColumns(): number | undefined {
  if (process.stdout.isTTY && process.stdout.columns) return process.stdout.columns;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env > 0 ? env : undefined;
}
