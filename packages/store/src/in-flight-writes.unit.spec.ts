import { describe, expect, it } from 'vitest';
import { InFlightWrites } from './in-flight-writes';

/** A write that fails after `turns` turns of the microtask queue. */
async function failsAfter(turns: number, message: string): Promise<never> {
  for (let i = 0; i < turns; i++) await Promise.resolve();
  throw new Error(message);
}

describe('InFlightWrites', () => {
  it('given two failed writes, when settled, the first sent is the error, though the one behind it failed sooner', async () => {
    const writes = new InFlightWrites();
    void writes.track(failsAfter(5, 'the append: the stream is not at the expected version'));
    void writes.track(failsAfter(0, 'current transaction is aborted'));
    await expect(writes.settle()).rejects.toThrow('the append');
  });

  it('given a failed write, when the transaction meets an error after it, the write is the error thrown', async () => {
    const writes = new InFlightWrites();
    void writes.track(failsAfter(3, 'the row write'));
    await expect(writes.fail(new Error('the read behind it'))).rejects.toThrow('the row write');
  });

  it('given a write that failed only on the aborted transaction, when the statement sent before it failed, that statement is the error thrown', async () => {
    const writes = new InFlightWrites();
    void writes.track(Promise.reject(Object.assign(new Error('current transaction is aborted'), { code: '25P02' })));
    const cancelled = Object.assign(new Error('canceling statement due to user request'), { code: '57014' });
    await expect(writes.fail(cancelled)).rejects.toThrow('canceling statement');
  });

  it('given writes that succeeded, fail throws the error it was given', async () => {
    const writes = new InFlightWrites();
    void writes.track(Promise.resolve(1));
    await expect(writes.fail(new Error('the command refused'))).rejects.toThrow('the command refused');
  });
});
