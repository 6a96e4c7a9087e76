// Writes a transaction sends without waiting for their answers: a read-model write whose result
// nothing needs (a task's row, a batch of rows, a trainer's output lines). Statements on one
// connection run in the order sent, so what is read after such a write sees it; the transaction
// settles them. On Postgres COMMIT is sent right behind them, so the last write and COMMIT share
// one round trip: a write that failed aborted the transaction, COMMIT then ends it as ROLLBACK,
// and the transaction throws that write's error. Where a transaction cannot hold statements in
// flight at COMMIT (PGlite, the simulation's store), they are settled before it.
import { isAbortedTransaction } from './errors';

export class InFlightWrites {
  /**
   * Runs `fn` with a fresh tracker and settles its writes before returning (where a transaction
   * cannot hold them in flight at COMMIT): `fn`'s result once they all succeeded, else the first
   * sent that failed (or `fn`'s own error, if none did).
   */
  static async settledWith<T>(fn: (writes: InFlightWrites) => Promise<T>): Promise<T> {
    const writes = new InFlightWrites();
    let result: T;
    try {
      result = await fn(writes);
    } catch (error) {
      return writes.fail(error);
    }
    await writes.settle();
    return result;
  }

  private readonly pending: Promise<void>[] = [];
  private failed: { error: unknown; order: number } | null = null;

  /**
   * Track `write` (in the order the writes were sent); its failure is recorded here (the caller
   * need not handle it).
   */
  track<T>(write: Promise<T>): Promise<T> {
    const order = this.pending.length;
    this.pending.push(
      write.then(
        () => {},
        (error: unknown) => {
          // The first sent is the cause: the writes behind it failed on the aborted transaction,
          // and their errors may be settled sooner (fewer steps between the driver and here).
          if (!this.failed || order < this.failed.order) this.failed = { error, order };
        },
      ),
    );
    return write;
  }

  /** Waits for every tracked write; throws the first sent that failed. */
  async settle(): Promise<void> {
    await Promise.all(this.pending);
    if (this.failed) throw this.failed.error;
  }

  /**
   * The transaction met `error`: waits for every tracked write, then throws the first sent that
   * failed if one did (a statement after a failed write fails only because the transaction was
   * aborted), else `error`. A write that failed only on the aborted transaction (25P02) was sent
   * behind the statement that failed (one the caller awaited), so then `error` is the cause.
   */
  async fail(error: unknown): Promise<never> {
    await Promise.all(this.pending);
    if (this.failed && (!isAbortedTransaction(this.failed.error) || isAbortedTransaction(error))) throw this.failed.error;
    throw error;
  }
}
