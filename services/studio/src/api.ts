// The typed API for the panel: tRPC's TanStack React Query binding over the shared client
// (HTTP batching for queries and mutations, SSE through the browser's EventSource for
// subscriptions). Types come from the server's router, type-only.
import { createTRPCContext } from '@trpc/tanstack-react-query';
import {
  createClient,
  errorInfo,
  isActive,
  isTerminal,
  uploadDataset,
  type AppRouter,
  type RouterInputs,
  type RouterOutputs,
} from '@trainyard/client';

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

/** Who acts from this panel (recorded as the actor of the events it causes). */
const STUDIO_USER = 'studio';

export function createStudioClient() {
  return createClient({
    url: globalThis.location.origin,
    user: STUDIO_USER,
    EventSource: globalThis.EventSource,
  });
}

export { errorInfo, isActive, isTerminal };

/** Uploads a dataset file from this browser; the answer's file_path is the task's datasetPath. */
export function uploadStudioDataset(file: File) {
  return uploadDataset(file, file.name, { url: globalThis.location.origin, user: STUDIO_USER });
}

/** The list query the task table shows and the live feed keeps current. */
export const TASK_LIST_INPUT = { limit: 200 } as const;

export function canCancel(t: Task): boolean {
  return !isTerminal(t.status) && !t.stop;
}
export function canDelete(t: Task): boolean {
  return isTerminal(t.status);
}
