// Webhook deliveries at the edge: reads task endings from the log (the service's one feed, and at
// start-up what it missed since the saved cursor), plans deliveries with the domain's
// planDeliveries, and sends the due ones: signed, with a timeout, each attempt and the domain's
// decision after it (delivered, retry after a backoff, failed) recorded in webhook_attempts and
// said in the service's log. Deliveries are rows of the database, so a restart, or another
// instance on the same database, carries on with them.
import {
  decideAfterAttempt,
  planDeliveries,
  WEBHOOK_SIGNATURE_HEADER,
  webhookEventTypeOf,
  type AttemptResult,
  type RetryPolicy,
  type StoredTaskEvent,
} from '@trainyard/domain';
import {
  claimDueDeliveries,
  compareTailCursors,
  loadTasks,
  planWebhookDeliveries,
  readCommittedAfter,
  readWebhookCursor,
  recordWebhookAttempt,
  webhookEndpoints,
  type Conn,
  type DueDelivery,
  type TailCursor,
} from '@trainyard/store';
import type { EventFeed } from '../feed';
import { errorText, type Logger } from '../log';
import { dnsResolver, nonAdminTarget, type Resolver } from './address';
import { postWebhook, type PinnedAddress } from './deliver';
import { signatureHeader } from './sign';

export interface WebhookDispatcherOptions extends RetryPolicy {
  /** One attempt's limit. */
  timeoutMs: number;
  /** How often due deliveries are looked for. */
  tickMs: number;
  version: string;
  /** In [0, 1): the backoff's jitter. */
  random?: () => number;
  /**
   * Tokens mode: a webhook not made by an admin is not sent to a loopback, private, link-local or
   * unspecified address (its host resolved again before each attempt, and the attempt connects to
   * the address that was checked). Local mode: everyone is an admin.
   */
  restrictNonAdmin: boolean;
  /** How a host name is resolved for the check (DNS by default; specs inject their own). */
  resolve?: Resolver;
}

/** How often the cursor is saved when no ending passed (a restart re-reads at most this much of the log). */
const CURSOR_SAVE_MS = 5000;
const CLAIM_BATCH = 20;

/** A URL as the log shows it: no query (it may carry a token). */
function urlForLog(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(bad url)';
  }
}

function retryAfterMs(value: string | null, now: number): number | null {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - now) : null;
}

function deliveryError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer in ${timeoutMs} ms`;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code) return `${code}${e.message && e.message !== code ? ` (${e.message})` : ''}`;
  const cause = e?.cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  return e?.message ?? String(err);
}

export class WebhookDispatcher {
  private chain: Promise<void> = Promise.resolve();
  private unlisten: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;
  private again = false;
  private closed = false;
  private lastCursorSave = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly random: () => number;

  constructor(
    private readonly db: Conn,
    private readonly feed: EventFeed,
    private readonly opts: WebhookDispatcherOptions,
    private readonly log: Logger,
  ) {
    this.random = opts.random ?? Math.random;
  }

  /** Start after the feed has: plan what was missed since the saved cursor, then follow the feed. */
  async start(): Promise<void> {
    const head = this.feed.cursor;
    const saved = await readWebhookCursor(this.db);
    // The first start plans from now on: no webhook exists yet to hear of older endings.
    if (!saved) await planWebhookDeliveries(this.db, [], head);
    this.enqueue(async () => {
      let c = saved ?? head;
      while (compareTailCursors(c, head) < 0) {
        const page = await readCommittedAfter(this.db, c, 500);
        if (!page.events.length) break;
        await this.plan(page.events, page.cursor, true);
        c = page.cursor;
      }
    });
    this.unlisten = this.feed.onEvents((events, cursors) => {
      const last = cursors[cursors.length - 1];
      if (last) this.enqueue(() => this.plan(events, last, false));
    });
    this.timer = setInterval(() => this.tick(), this.opts.tickMs);
    this.timer.unref();
    this.tick();
  }

  private enqueue(job: () => Promise<void>): void {
    this.chain = this.chain
      .then(job)
      .catch((err: Error) => this.log.warn(`webhooks: planning deliveries failed: ${errorText(err)}; retried with the next events`));
  }

  private async plan(events: readonly StoredTaskEvent[], cursor: TailCursor, force: boolean): Promise<void> {
    if (this.closed) return;
    const endings = events.filter((e) => webhookEventTypeOf(e.type) !== null);
    if (!endings.length) {
      if (!force && Date.now() - this.lastCursorSave < CURSOR_SAVE_MS) return;
      await planWebhookDeliveries(this.db, [], cursor);
      this.lastCursorSave = Date.now();
      return;
    }
    const endpoints = await webhookEndpoints(this.db);
    const tasks = endpoints.length ? await loadTasks(this.db, [...new Set(endings.map((e) => e.streamId))]) : new Map();
    const planned = planDeliveries(endings, tasks, endpoints);
    await planWebhookDeliveries(this.db, planned, cursor);
    this.lastCursorSave = Date.now();
    if (planned.length) this.tick();
  }

  /** Send what is due now (again at once if something came due meanwhile). */
  tick(): void {
    if (this.closed) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    const run = (async () => {
      try {
        do {
          this.again = false;
          const due = await claimDueDeliveries(this.db, CLAIM_BATCH, 2 * this.opts.timeoutMs + 5000);
          await Promise.all(due.map((d) => this.send(d)));
          if (due.length === CLAIM_BATCH) this.again = true;
        } while (this.again && !this.closed);
      } catch (err) {
        this.log.warn(`webhooks: cannot read due deliveries: ${errorText(err)}`);
      } finally {
        this.ticking = false;
      }
    })();
    this.inFlight.add(run);
    void run.finally(() => this.inFlight.delete(run));
  }

  private async send(d: DueDelivery): Promise<void> {
    const attempt = d.attempts + 1;
    const started = Date.now();
    let result: AttemptResult;
    const target = this.opts.restrictNonAdmin && !d.byAdmin ? await nonAdminTarget(d.url, this.opts.resolve ?? dnsResolver) : null;
    if (target && 'problem' in target) result = { kind: 'refused', message: target.problem };
    else
      try {
        const pinned: PinnedAddress | null = target ? target.pinned : null;
        const headers = {
          'content-type': 'application/json',
          'user-agent': `Trainyard-Webhooks/${this.opts.version}`,
          'x-trainyard-delivery': d.id,
          'x-trainyard-event': d.type,
          'x-trainyard-attempt': String(attempt),
          [WEBHOOK_SIGNATURE_HEADER]: signatureHeader(d.secret, Math.floor(Date.now() / 1000), d.body),
        };
        const res = await postWebhook(d.url, headers, d.body, this.opts.timeoutMs, pinned);
        const retryAfter = res.headers['retry-after'];
        result = {
          kind: 'response',
          status: res.status,
          retryAfterMs: retryAfterMs(typeof retryAfter === 'string' ? retryAfter : null, Date.now()),
        };
      } catch (err) {
        result = { kind: 'error', message: deliveryError(err, this.opts.timeoutMs) };
      }
    const durationMs = Date.now() - started;
    const decision = decideAfterAttempt(attempt, result, this.opts, this.random());
    const seen = result.kind === 'response' ? `HTTP ${result.status}` : result.kind === 'refused' ? 'not sent' : result.message;
    const what =
      decision.kind === 'delivered'
        ? 'delivered'
        : decision.kind === 'retry'
          ? `retry in ${(decision.delayMs / 1000).toFixed(1)} s`
          : `failed: ${decision.why}`;
    const line = `webhook ${d.id} (task ${d.taskId}, ${d.type}) to ${urlForLog(d.url)}: attempt ${attempt} of ${this.opts.maxAttempts}, ${seen}; ${what}`;
    if (decision.kind === 'delivered') this.log.info(line);
    else this.log.warn(line);
    try {
      await recordWebhookAttempt(
        this.db,
        d.id,
        {
          attempt,
          status: result.kind === 'response' ? result.status : null,
          error: result.kind === 'response' ? null : result.message,
          durationMs,
        },
        decision,
      );
    } catch (err) {
      // The claim lapses and the attempt is made again: at least once, never lost.
      this.log.warn(`webhooks: cannot record attempt ${attempt} of ${d.id}: ${errorText(err)}`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unlisten?.();
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([this.chain, ...this.inFlight]);
  }
}
