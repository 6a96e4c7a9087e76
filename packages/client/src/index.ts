// The typed client of the Trainyard API: HTTP batching for queries, one request per mutation, SSE for
// subscriptions. Used by the CLI, the Studio panel and the tests.
import { createTRPCClient, httpBatchLink, httpLink, httpSubscriptionLink, splitLink, TRPCClientError, type TRPCClient } from '@trpc/client';
import type { inferRouterInputs, inferRouterOutputs } from '@trpc/server';
import type { AppRouter } from '@trainyard/server/router';
import { authHeaders } from './auth';
import { serviceUrl } from './base-url';

export type { AppRouter };
export {
  ACTIVE_STATUSES,
  isActive,
  isTerminal,
  isWaiting,
  OPEN_STATUSES,
  TASK_STATUSES,
  TERMINAL_STATUSES,
  WAITING_STATUSES,
  type TaskStatus,
} from '@trainyard/domain/status';
export { accounting, taskSpeed, throughputSeries, type ProgressPoint } from '@trainyard/domain/metrics';
export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;
export type TaskView = RouterOutputs['tasks']['get'];
export type TrainyardClient = TRPCClient<AppRouter>;

export { DEFAULT_URL } from './base-url';

export interface ClientOptions {
  /** Base URL of the service (no /trpc); default TRAINYARD_URL or http://127.0.0.1:8080. */
  url?: string;
  /** Who is acting in local mode (recorded in the audit log as the event's actor). */
  user?: string;
  /** A bearer token (the service in tokens mode requires one; it then says who is acting). */
  token?: string;
  /** EventSource implementation; defaults to the global one, or the `eventsource` package in Node. */
  EventSource?: typeof globalThis.EventSource;
  headers?: Record<string, string>;
}

export async function defaultEventSource(): Promise<typeof globalThis.EventSource> {
  if (typeof globalThis.EventSource === 'function') return globalThis.EventSource;
  const mod = await import('eventsource');
  return mod.EventSource as unknown as typeof globalThis.EventSource;
}

export function trpcUrl(base: string): string {
  return `${base.replace(/\/+$/, '')}/trpc`;
}

export function createClient(opts: ClientOptions & { EventSource: typeof globalThis.EventSource }): TrainyardClient {
  const url = trpcUrl(serviceUrl(opts.url));
  const headers = { ...authHeaders(opts), ...opts.headers };
  const EventSourceImpl = opts.EventSource;
  return createTRPCClient<AppRouter>({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({
          url,
          EventSource: EventSourceImpl,
          // Browsers' EventSource cannot send headers; the `eventsource` package can, via fetch
          // (a page with a token passes it: FetchEventSource).
          eventSourceOptions: () =>
            ({
              fetch: (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) =>
                fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), ...headers } }),
            }) as never,
        }),
        // Mutations go out at once, one request each: batching waits a timer tick (about a
        // millisecond) to gather calls, which every single submission would pay. Queries made
        // together (a panel refreshing several views) still share one request.
        false: splitLink({
          condition: (op) => op.type === 'mutation',
          true: httpLink({ url, headers }),
          false: httpBatchLink({ url, headers, maxItems: 50 }),
        }),
      }),
    ],
  });
}

/** An EventSource that sends headers (over fetch): what a browser needs to subscribe with a token. */
export { EventSource as FetchEventSource } from 'eventsource';

/** A client for Node: resolves the EventSource implementation first. */
export async function connect(opts: ClientOptions = {}): Promise<TrainyardClient> {
  return createClient({ ...opts, EventSource: opts.EventSource ?? (await defaultEventSource()) });
}

export interface ApiErrorInfo {
  code: string;
  message: string;
  httpStatus: number | null;
  fieldErrors: Record<string, string[]> | null;
}

/** The parts of an API error a caller acts on (code, message, field errors). */
export function errorInfo(err: unknown): ApiErrorInfo {
  if (err instanceof TRPCClientError) {
    const data = (err.data ?? {}) as { code?: string; httpStatus?: number; fieldErrors?: Record<string, string[]> | null };
    return {
      code: data.code ?? (err.cause ? 'NETWORK_ERROR' : 'UNKNOWN'),
      message: err.message,
      httpStatus: data.httpStatus ?? null,
      fieldErrors: data.fieldErrors ?? null,
    };
  }
  return { code: 'UNKNOWN', message: (err as Error)?.message ?? String(err), httpStatus: null, fieldErrors: null };
}

export { TRPCClientError };
export { DatasetUploadError, UPLOAD_DATASET_PATH, uploadDataset, type UploadedDataset, type UploadOptions } from './upload';
export { DownloadError, downloadOutputs, downloadPath, type OutputsDownload } from './download';
