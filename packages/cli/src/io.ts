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
