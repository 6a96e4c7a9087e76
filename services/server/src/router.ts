// The API: tRPC v11 procedures. Names are a contract (panel, CLI and scripts depend on them).
// Procedures validate with zod (schemas.ts), call the service, and translate domain errors into
// tRPC codes with a message that names what went wrong and a field when there is one.
import { randomUUID } from 'node:crypto';
import { initTRPC, tracked, TRPCError } from '@trpc/server';
import { ZodError } from 'zod';
import { DeploymentCommandError, IllegalCommandError, TaskNotFoundError } from '@trainyard/domain';
import { ConcurrencyError, databaseErrorMessage, InvalidCursorError, isConnectionError } from '@trainyard/store';
import { log } from './log';
import { SubscriptionEndedError, SubscriptionLimitError, UnknownPositionError } from './live';
import { DeploymentNotFoundError, ForbiddenError } from './field-error';
import { FieldError, IdempotencyConflictError, type Actor, type TrainyardService } from './service';
import {
  cancelInput,
  createManyInput,
  createTaskInput,
  eventsListInput,
  idInput,
  listTasksInput,
  logsInput,
  metricsInput,
  onLogsInput,
  onUpdateInput,
  QUEUE_PAGE_DEFAULT,
  queueGetInput,
  quotaSetInput,
  REPLAY_PAGE_MAX_BYTES,
  replayInput,
  createDeploymentInput,
  deploymentIdInput,
  deploymentAdapterInput,
  deploymentUpdatesInput,
  listDeploymentsInput,
} from './schemas';
import {
  createWebhookFor,
  deleteWebhookFor,
  deliveriesFor,
  listWebhooksFor,
  webhookCreateInput,
  webhookDeliveriesInput,
  webhookIdInput,
} from './webhooks/api';

export interface Context {
  service: TrainyardService;
  actor: Actor;
  /** Who subscriptions are counted against (live.ts subscriptionClientKey). */
  client: string;
}

/** How long one subscription may last; set from ServiceConfig.subscriptionMaxMs when the server is made. */
const subscriptionLifetime: { maxDurationMs: number | undefined } = { maxDurationMs: undefined };

/** tRPC ends a subscription's stream after `maxDurationMs`; the client reconnects with its last id. */
export function configureSubscriptions(o: { maxDurationMs: number }): void {
  subscriptionLifetime.maxDurationMs = o.maxDurationMs;
}

export type FieldErrors = Record<string, string[]>;

function fieldErrorsOf(cause: unknown): FieldErrors | null {
  if (cause instanceof ZodError) {
    // A Map, not a plain object: field names come from the client, and an unknown field called
    // "constructor" or "__proto__" found Object.prototype's member there, so `.push` threw and
    // the bad input got a 500 instead of a BAD_REQUEST naming it.
    const out = new Map<string, string[]>();
    const add = (key: string, message: string) => out.set(key, [...(out.get(key) ?? []), message]);
    for (const issue of cause.issues) {
      const key = issue.path.length ? issue.path.join('.') : '(input)';
      let message = issue.message;
      if (issue.code === 'unrecognized_keys') {
        for (const k of issue.keys) add([...issue.path, k].join('.'), `${k} is not a known field`);
        continue;
      }
      if (issue.code === 'invalid_type' && /received undefined/.test(message)) message = `${key} is required`;
      add(key, message);
    }
    return Object.fromEntries(out);
  }
  if (cause instanceof FieldError) return { [cause.field]: [cause.message] };
  return null;
}

/**
 * An unexpected error is logged in full under a correlation id (the request's, or a new one) and
 * answered with that id only: its message may hold a query's text, table names or paths.
 */
function reportInternalError(
  error: TRPCError,
  ctx: Context | undefined,
  path: string | undefined,
): { message: string; correlationId: string } {
  const correlationId = ctx?.actor.correlationId ?? randomUUID();
  const detail = error.cause ? (error.cause.stack ?? String(error.cause)) : (error.stack ?? error.message);
  (ctx?.service.log ?? log).error(`internal error (correlation id ${correlationId}) in ${path ?? '?'}: ${detail}`);
  return { message: `internal error (correlation id ${correlationId}); the server log has the details`, correlationId };
}

const t = initTRPC.context<Context>().create({
  errorFormatter({ shape, error, ctx, path }) {
    const internal = error.code === 'INTERNAL_SERVER_ERROR';
    const fieldErrors = internal ? null : fieldErrorsOf(error.cause);
    const illegal = error.cause instanceof IllegalCommandError ? error.cause : null;
    let message = shape.message;
    let correlationId: string | null = null;
    if (internal) {
      ({ message, correlationId } = reportInternalError(error, ctx, path));
    } else if (fieldErrors) {
      message = Object.entries(fieldErrors)
        .map(([k, v]) => `${k}: ${v.join('; ')}`)
        .join('\n');
    }
    return {
      ...shape,
      message,
      data: {
        ...shape.data,
        // Never leak stack traces to clients.
        stack: undefined,
        fieldErrors,
        task: illegal ? { id: illegal.taskId, status: illegal.status, command: illegal.command } : null,
        correlationId,
      },
    };
  },
  sse: {
    ping: { enabled: true, intervalMs: 5000 },
    client: { reconnectAfterInactivityMs: 15_000 },
    // Read at each subscription (the configuration is known only once the server is made).
    get maxDurationMs() {
      return subscriptionLifetime.maxDurationMs;
    },
  },
});

/** Domain and infrastructure errors → the tRPC error a client can act on (null: leave it as it is). */
function translate(err: unknown): TRPCError | null {
  const wrap = (code: TRPCError['code'], message: string) => new TRPCError({ code, message, cause: err });
  if (err instanceof TaskNotFoundError) return wrap('NOT_FOUND', err.message);
  if (err instanceof IllegalCommandError) return wrap('CONFLICT', err.message);
  if (err instanceof DeploymentNotFoundError) return wrap('NOT_FOUND', err.message);
  if (err instanceof DeploymentCommandError) return wrap('CONFLICT', err.message);
  if (err instanceof IdempotencyConflictError) return wrap('CONFLICT', err.message);
  if (err instanceof FieldError) return wrap('BAD_REQUEST', `${err.field}: ${err.message}`);
  if (err instanceof ForbiddenError) return wrap('FORBIDDEN', err.message);
  if (err instanceof InvalidCursorError)
    return new TRPCError({ code: 'BAD_REQUEST', message: `cursor: ${err.message}`, cause: new FieldError('cursor', err.message) });
  if (err instanceof ConcurrencyError) return wrap('CONFLICT', `${err.message}; please retry`);
  if (err instanceof SubscriptionLimitError) return wrap('TOO_MANY_REQUESTS', err.message);
  // A code the subscription link retries: the client reconnects with its last id and resumes.
  if (err instanceof SubscriptionEndedError) return wrap('SERVICE_UNAVAILABLE', err.message);
  if (err instanceof UnknownPositionError)
    return new TRPCError({
      code: 'BAD_REQUEST',
      message: `lastEventId: ${err.message}`,
      cause: new FieldError('lastEventId', err.message),
    });
  if (isConnectionError(err))
    return wrap(
      'SERVICE_UNAVAILABLE',
      `the database is unreachable right now (${databaseErrorMessage(err)}); the service keeps retrying, try again shortly`,
    );
  return null;
}

const errors = t.middleware(async ({ next }) => {
  const result = await next();
  if (result.ok) return result;
  const translated = translate(result.error.cause ?? result.error);
  if (translated) result.error = translated;
  return result;
});

const procedure = t.procedure.use(errors);

const systemRouter = t.router({
  health: procedure.query(({ ctx }) => ctx.service.health(ctx.actor)),
  /** The process answers (no database involved): a liveness probe, and the API's own floor in benchmarks. */
  ping: procedure.query(() => ({ ok: true as const, at: new Date().toISOString() })),
  gpuInfo: procedure.query(({ ctx }) => ctx.service.gpuInfo()),
  /** Each GPU's memory in use and utilisation at each probe of the last hour (since the service started, if later). */
  gpuHistory: procedure.query(({ ctx }) => ctx.service.gpuHistory()),
});

const tasksRouter = t.router({
  create: procedure.input(createTaskInput).mutation(async ({ ctx, input }) => {
    const { task, warnings, created, dataset } = await ctx.service.createTask(input, ctx.actor);
    return { ...task, warnings, created, dataset };
  }),
  /** Several tasks in one request and one transaction, queued in the order given, all or nothing (a sweep). */
  createMany: procedure.input(createManyInput).mutation(({ ctx, input }) => ctx.service.createMany(input, ctx.actor)),
  get: procedure.input(idInput).query(({ ctx, input }) => ctx.service.getTask(input.id, ctx.actor)),
  list: procedure.input(listTasksInput).query(({ ctx, input }) =>
    ctx.service.listTasks(
      {
        statuses: input.status === undefined ? undefined : Array.isArray(input.status) ? input.status : [input.status],
        cursor: input.cursor ?? null,
        limit: input.limit,
        search: input.search,
        idPrefix: input.idPrefix,
        ownerFilter: input.owner,
      },
      ctx.actor,
    ),
  ),
  cancel: procedure.input(cancelInput).mutation(({ ctx, input }) => ctx.service.cancelTask(input.id, input.reason, ctx.actor)),
  /** Pause: kept in its place in the queue, not started (a running task checkpoints and stops first); resume lets it start again. */
  pause: procedure.input(cancelInput).mutation(({ ctx, input }) => ctx.service.pauseTask(input.id, input.reason, ctx.actor)),
  resume: procedure.input(idInput).mutation(({ ctx, input }) => ctx.service.resumeTask(input.id, ctx.actor)),
  delete: procedure.input(idInput).mutation(({ ctx, input }) => ctx.service.deleteTask(input.id, ctx.actor)),
  /** Its recorded progress reports (loss, learning rate, steps over time) and the most GPU memory it was seen holding. */
  metrics: procedure
    .input(metricsInput)
    .query(({ ctx, input }) => ctx.service.metrics(input.id, input.after ?? null, input.limit, ctx.actor)),
  /** Its output folder and artifacts: absolute paths and sizes (a folder's is the sum of its files). */
  outputs: procedure.input(idInput).query(({ ctx, input }) => ctx.service.outputs(input.id, ctx.actor)),
  logs: procedure
    .input(logsInput)
    .query(({ ctx, input }) => ctx.service.logs(input.id, input.afterSeq, input.limit, input.includeProtocol, ctx.actor)),

  /**
   * Task changes as they are committed. Ids are log positions: reconnect with the last id
   * seen and nothing is missed (the tail never skips a late commit; see readCommittedAfter).
   * Every subscriber is fed from one read of each change (live.ts).
   */
  onUpdate: procedure.input(onUpdateInput).subscription(async function* ({ ctx, input, signal }) {
    // Subscriptions fail while iterated, past the middleware: translate their errors here
    // (an unknown task was an INTERNAL_SERVER_ERROR).
    try {
      const updates = ctx.service.taskUpdates({
        taskId: input.taskId,
        lastEventId: input.lastEventId,
        client: ctx.client,
        signal,
        actor: ctx.actor,
      });
      for await (const u of updates) yield tracked(u.event.position, u);
    } catch (err) {
      throw translate(err) ?? err;
    }
  }),

  /** A task's log lines as they are stored; ids are line numbers, so a reconnect resumes. */
  onLogs: procedure.input(onLogsInput).subscription(async function* ({ ctx, input, signal }) {
    try {
      const lines = ctx.service.logLines({
        id: input.id,
        afterSeq: input.lastEventId ? Number(input.lastEventId) : 0,
        includeProtocol: input.includeProtocol,
        client: ctx.client,
        signal,
        actor: ctx.actor,
      });
      for await (const l of lines) yield tracked(String(l.seq), l);
    } catch (err) {
      throw translate(err) ?? err;
    }
  }),
});

const usersRouter = t.router({
  /** Who the caller is: their name, whether an admin, the auth mode, and their token's id and expiry. */
  me: procedure.query(({ ctx }) => ctx.service.me(ctx.actor)),
});

const quotasRouter = t.router({
  /** Every user's limits and standing (GPU-hours used in their window, decayed use): admins. */
  get: procedure.query(({ ctx }) => ctx.service.quotaList(ctx.actor)),
  /** Set a user's limits: devices at once, GPU-hours per window, highest priority class, fair-share weight (admins). */
  set: procedure.input(quotaSetInput).mutation(({ ctx, input }) => ctx.service.setQuota(input, ctx.actor)),
});

const queueRouter = t.router({
  get: procedure.input(queueGetInput).query(({ ctx, input }) => ctx.service.queue(ctx.actor, input?.limit ?? QUEUE_PAGE_DEFAULT)),
});

const eventsRouter = t.router({
  list: procedure.input(eventsListInput).query(async ({ ctx, input }) => {
    const events = await ctx.service.listEvents(
      {
        streamId: input.taskId,
        types: input.type === undefined ? undefined : Array.isArray(input.type) ? input.type : [input.type],
        actor: input.actor,
        from: input.from,
        to: input.to,
        afterPosition: input.cursor ?? undefined,
        limit: input.limit,
      },
      ctx.actor,
    );
    return {
      events,
      nextCursor: events.length === input.limit ? events[events.length - 1]!.position : null,
    };
  }),
  replay: procedure
    .input(replayInput)
    .query(({ ctx, input }) =>
      ctx.service.replay(
        input.taskId,
        { position: input.atPosition, time: input.atTime },
        { afterPosition: input.afterPosition ?? undefined, limit: input.limit, maxBytes: REPLAY_PAGE_MAX_BYTES },
        ctx.actor,
      ),
    ),
});

const deploymentsRouter = t.router({
  create: procedure.input(createDeploymentInput).mutation(({ ctx, input }) => ctx.service.deployments.create(input, ctx.actor)),
  get: procedure.input(deploymentIdInput).query(({ ctx, input }) => ctx.service.deployments.get(input.id, ctx.actor)),
  list: procedure.input(listDeploymentsInput).query(({ ctx, input }) => ctx.service.deployments.list(ctx.actor, input?.limit ?? 100)),
  stop: procedure.input(deploymentIdInput).mutation(({ ctx, input }) => ctx.service.deployments.stop(input.id, ctx.actor)),
  delete: procedure.input(deploymentIdInput).mutation(({ ctx, input }) => ctx.service.deployments.delete(input.id, ctx.actor)),
  addAdapter: procedure
    .input(deploymentAdapterInput)
    .mutation(({ ctx, input }) => ctx.service.deployments.addAdapter(input.id, input.taskId, ctx.actor)),
  removeAdapter: procedure
    .input(deploymentAdapterInput)
    .mutation(({ ctx, input }) => ctx.service.deployments.removeAdapter(input.id, input.taskId, ctx.actor)),
  /** Each change of a deployment (or of all the caller may see) as its record after the change, from now on. */
  onUpdate: procedure.input(deploymentUpdatesInput).subscription(async function* ({ ctx, input, signal }) {
    try {
      yield* ctx.service.deployments.updates({ id: input?.id, viewer: ctx.actor, signal });
    } catch (err) {
      throw translate(err) ?? err;
    }
  }),
});

const webhooksRouter = t.router({
  /** A webhook for the caller's tasks' endings (an admin's allUsers: everyone's); the secret is returned this once. */
  create: procedure.input(webhookCreateInput).mutation(({ ctx, input }) => createWebhookFor(ctx.service.database.db, ctx.actor, input)),
  list: procedure.query(({ ctx }) => listWebhooksFor(ctx.service.database.db, ctx.actor)),
  delete: procedure.input(webhookIdInput).mutation(({ ctx, input }) => deleteWebhookFor(ctx.service.database.db, ctx.actor, input.id)),
  /** Deliveries, newest first, each with its attempts (status or error, what was decided). */
  deliveries: procedure.input(webhookDeliveriesInput).query(({ ctx, input }) => deliveriesFor(ctx.service.database.db, ctx.actor, input)),
});

export const appRouter = t.router({
  system: systemRouter,
  tasks: tasksRouter,
  users: usersRouter,
  quotas: quotasRouter,
  queue: queueRouter,
  events: eventsRouter,
  deployments: deploymentsRouter,
  webhooks: webhooksRouter,
});

export type AppRouter = typeof appRouter;
