// The model Studio's switch-model chose, kept in a file under the data folder so that it
// survives restarts (Studio reads it once when its panel loads). Written atomically: a crash
// leaves the old choice or the new one, never half of either.
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ensurePrivateDir, writeJsonAtomic } from '../trainer/run-folder';

export class CurrentModel {
  /** Writes one at a time: the atomic write's temp file is per process. */
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly file: string) {}

  /** The model last chosen, or null before any (or when the file is not one this class wrote). */
  async read(): Promise<string | null> {
    try {
      const value = JSON.parse(await readFile(this.file, 'utf8')) as { current_model?: unknown };
      return typeof value.current_model === 'string' ? value.current_model : null;
    } catch {
      return null;
    }
  }

  write(model: string): Promise<void> {
    const next = this.writing.then(async () => {
      ensurePrivateDir(dirname(this.file), dirname(this.file));
      await writeJsonAtomic(this.file, { current_model: model, at: new Date().toISOString() });
    });
    this.writing = next.catch(() => undefined);
    return next;
  }
}
