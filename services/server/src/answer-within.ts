// What health and a metrics scrape wait for from the database before they say it does not
// answer. Their statements are bounded by the statement limit (TRAINYARD_DB_QUERY_TIMEOUT_MS, 2 min
// by default), far longer than a monitor waits: Prometheus gives up on a scrape after 10 s by
// default, and would then report the service down, not its database.

/** How long health and a metrics scrape wait for a database read. */
const DATABASE_PROBE_MS = 5_000;

export class NoAnswerError extends Error {
  override name = 'NoAnswerError';
  constructor(readonly ms: number) {
    super(`no answer within ${ms / 1000} s`);
  }
}

/** `work`'s outcome, or a NoAnswerError once `ms` pass without it (the work goes on; what it ends with then is dropped). */
export function answerWithin<T>(work: Promise<T>, ms = DATABASE_PROBE_MS): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new NoAnswerError(ms)), ms);
    timer.unref();
    work.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
