import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './log';

/** An in-memory stream; once `fail` is set every write fails with that code, as a closed pipe does. */
function stream() {
  const s = Object.assign(
    new Writable({
      write(chunk, _enc, done) {
        s.attempts++;
        if (s.fail) {
          const err = Object.assign(new Error(`write ${s.fail}`), { code: s.fail });
          done(err);
          return;
        }
        s.lines.push(String(chunk));
        done();
      },
    }),
    { lines: [] as string[], attempts: 0, fail: null as string | null },
  );
  return s;
}

const tick = () => new Promise((r) => setImmediate(r));

describe('the service logger', () => {
  it('writes info to stdout and warnings and errors to stderr, prefixed; line() verbatim', async () => {
    const stdout = stream();
    const stderr = stream();
    const log = createLogger({ stdout, stderr });
    log.info('hello');
    log.line('{"trainyard":"listening","port":1,"pid":2}');
    log.warn('careful');
    log.error('broke:', new Error('boom'));
    await tick();
    expect(stdout.lines).toEqual(['[trainyard] hello\n', '{"trainyard":"listening","port":1,"pid":2}\n']);
    expect(stderr.lines[0]).toBe('[trainyard] careful\n');
    expect(stderr.lines[1]).toMatch(/^\[trainyard\] broke: Error: boom\n {4}at /);
    expect(log.dropped()).toEqual({ stdout: 0, stderr: 0 });
  });

  it('after a write fails with EPIPE, never writes to that stream again and counts what it drops', async () => {
    const stdout = stream();
    const stderr = stream();
    const log = createLogger({ stdout, stderr });
    stdout.fail = 'EPIPE';
    log.info('lost');
    await tick();
    expect(stdout.attempts).toBe(1);
    for (let i = 0; i < 10_000; i++) log.info(`line ${i}`);
    await tick();
    expect(stdout.attempts).toBe(1);
    expect(log.dropped()).toEqual({ stdout: 10_001, stderr: 0 });
    // Said once on the other stream.
    expect(stderr.lines).toEqual(['[trainyard] stdout failed (EPIPE): its log lines are dropped from now on\n']);
    log.warn('still here');
    await tick();
    expect(stderr.lines.at(-1)).toBe('[trainyard] still here\n');
  });

  it('with both streams broken, logging from an error handler ends: no write loops back', async () => {
    const stdout = stream();
    const stderr = stream();
    const log = createLogger({ stdout, stderr });
    stdout.fail = 'EPIPE';
    stderr.fail = 'EPIPE';
    // As the uncaughtException handler does: log an error, which fails, which is logged again.
    log.error('uncaught exception:', new Error('first'));
    log.info('and this');
    for (let i = 0; i < 100; i++) await tick();
    expect(stdout.attempts + stderr.attempts).toBeLessThanOrEqual(3);
    for (let i = 0; i < 1000; i++) log.error('uncaught exception:', new Error(`again ${i}`));
    await tick();
    expect(stdout.attempts + stderr.attempts).toBeLessThanOrEqual(3);
  });

  it('a stream already destroyed, or one whose write throws, is dropped without an exception', () => {
    const stdout = stream();
    stdout.destroy();
    const stderr = {
      write: () => {
        throw Object.assign(new Error('write EIO'), { code: 'EIO' });
      },
      on: () => stderr,
    };
    const log = createLogger({ stdout, stderr });
    expect(() => {
      log.info('a');
      log.error('b');
      log.warn('c');
    }).not.toThrow();
    expect(stdout.attempts).toBe(0);
    expect(log.dropped().stdout).toBeGreaterThanOrEqual(1);
    expect(log.dropped().stderr).toBeGreaterThanOrEqual(2);
  });

  it('an error detail that cannot be printed still logs the message', async () => {
    const stdout = stream();
    const stderr = stream();
    const log = createLogger({ stdout, stderr });
    const hostile = {
      [Symbol.for('nodejs.util.inspect.custom')]: () => {
        throw new Error('no');
      },
    };
    log.error('unhandled rejection:', hostile);
    await tick();
    expect(stderr.lines).toEqual(['[trainyard] unhandled rejection: (detail could not be printed)\n']);
  });
});
