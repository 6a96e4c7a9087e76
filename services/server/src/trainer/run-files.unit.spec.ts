import { closeSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jsonFileText, openPrivate, PRIVATE_FILE_MODE, RUN_FILES, tempPathFor, writeAll, writeJsonAtomicSync } from './run-files.mjs';

let dir: string;
let umask: number;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'run-files-'));
  // A umask that takes the owner's write bit away must not leave run files unwritable (nor does
  // any umask make them readable by others: 0600 is asked for and set again after open).
  umask = process.umask(0o277);
});
afterEach(() => {
  process.umask(umask);
  rmSync(dir, { recursive: true, force: true });
});

describe('run-files', () => {
  it('given a value, when written atomically, then the file holds it on one line, is private, and no temp file is left', () => {
    const file = join(dir, RUN_FILES.exit);
    writeJsonAtomicSync(file, { code: 0, signal: null, endedAt: 1 });
    expect(readFileSync(file, 'utf8')).toBe('{"code":0,"signal":null,"endedAt":1}\n');
    expect(statSync(file).mode & 0o777).toBe(PRIVATE_FILE_MODE);
    expect(readdirSync(dir)).toEqual([RUN_FILES.exit]);
  });

  it('given an existing file, when written again, then it is replaced whole', () => {
    const file = join(dir, RUN_FILES.trainer);
    writeJsonAtomicSync(file, { pid: 1, startTime: 'a'.repeat(100) });
    writeJsonAtomicSync(file, { pid: 2, startTime: '3' });
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ pid: 2, startTime: '3' });
  });

  it('given a file opened for appending, when written in parts, then everything is there in order and the file is private', () => {
    const file = join(dir, RUN_FILES.output);
    for (const part of ['one\n', 'two\n']) {
      const fd = openPrivate(file, 'a');
      writeAll(fd, Buffer.from(part));
      closeSync(fd);
    }
    expect(readFileSync(file, 'utf8')).toBe('one\ntwo\n');
    expect(statSync(file).mode & 0o777).toBe(PRIVATE_FILE_MODE);
  });

  it('names the temp file after the file and this process, and a JSON file ends with its newline', () => {
    expect(tempPathFor('/x/exit.json')).toBe(`/x/exit.json.tmp-${process.pid}`);
    expect(jsonFileText({ a: 1 })).toBe('{"a":1}\n');
  });
});
