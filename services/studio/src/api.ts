// The typed API for the panel: tRPC's TanStack React Query binding over the shared client
// (HTTP batching for queries and mutations, SSE through the browser's EventSource for
// subscriptions). Types come from the server's router, type-only.
import { createTRPCContext } from '@trpc/tanstack-react-query';
import {
  createClient,
  downloadOutputs,
  downloadPath,
  errorInfo,
  FetchEventSource,
  isActive,
  isTerminal,
  isWaiting,
  accounting,
  taskSpeed,
  throughputSeries,
  uploadDataset,
  type AppRouter,
  type ProgressPoint,
  type RouterInputs,
  type RouterOutputs,
} from '@trainyard/client';
import { currentToken } from './session';

export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();

export type Task = RouterOutputs['tasks']['get'];
export type TaskStatus = Task['status'];
export type GpuInfo = RouterOutputs['system']['gpuInfo'];
export type GpuDevice = GpuInfo['devices'][number];
export type QueueView = RouterOutputs['queue']['get'];
export type CreateResult = RouterOutputs['tasks']['create'];
export type CreateInput = RouterInputs['tasks']['create'];
export type StoredEvent = RouterOutputs['events']['list']['events'][number];
export type ReplayResult = RouterOutputs['events']['replay'];
/** What the scheduler saw when it placed a task (TaskAssigned's `grounds`; null before they were recorded). */
export type PlacementGrounds = Extract<StoredEvent, { type: 'TaskAssigned' }>['data']['grounds'];
export type QueuedEntry = QueueView['queued'][number];
export type QueueDevice = QueueView['devices'][number];

/** Who acts from this panel in local mode (recorded as the actor of the events it causes); in tokens mode the token says. */
const STUDIO_USER = 'studio';
export type Me = RouterOutputs['users']['me'];

/**
 * The client for this page, signed in with `token` when there is one. The browser's EventSource
 * cannot send an Authorization header: with a token, subscriptions go over fetch instead.
 */
export function createStudioClient(token: string | null) {
  return createClient({
    url: globalThis.location.origin,
    user: STUDIO_USER,
    ...(token ? { token } : {}),
    EventSource: token ? (FetchEventSource as unknown as typeof globalThis.EventSource) : globalThis.EventSource,
  });
}

export { accounting, errorInfo, isActive, isTerminal, isWaiting, taskSpeed, throughputSeries, type ProgressPoint };

/** Uploads a dataset file from this browser; the answer's file_path is the task's datasetPath. */
export function uploadStudioDataset(file: File) {
  const token = currentToken();
  return uploadDataset(file, file.name, { url: globalThis.location.origin, user: STUDIO_USER, ...(token ? { token } : {}) });
}

export { downloadPath };

/** A completed task's output folder (.tar.gz) fetched with this tab's token, whole, to save from memory. */
export async function downloadStudioOutputs(taskId: string): Promise<{ blob: Blob; filename: string }> {
  const token = currentToken();
  const got = await downloadOutputs(taskId, { url: globalThis.location.origin, user: STUDIO_USER, ...(token ? { token } : {}) });
  return { blob: await new Response(got.body).blob(), filename: got.filename };
}

/** The list query the task table shows and the live feed keeps current. */
export const TASK_LIST_INPUT = { limit: 200 } as const;

/** A task not ended and not already being cancelled (a cancel overrules a preemption or a timeout under way). */
export function canCancel(t: Task): boolean {
  return !isTerminal(t.status) && t.stop?.reason !== 'cancel';
}
export function canDelete(t: Task): boolean {
  return isTerminal(t.status);
}
