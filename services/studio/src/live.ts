// The live feed: one `tasks.onUpdate` subscription for the whole panel. Each event updates the
// cached task list in place and schedules a refresh of the queue; no polling. Its event ids are
// log positions: the link resumes from the last one after a dropped connection (EventSource
// reconnect, with Last-Event-ID), and after a hard failure we resubscribe from it ourselves.
// Beside it, `deployments.onUpdate` refreshes the deployments and the queue when one changes.
import { skipToken, useQueryClient, type QueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { useCallback, useEffect, useRef, useState } from 'react';
import { TASK_LIST_INPUT, useTRPC, type Task } from './api';
import { markDown, markUp, onRecovered } from './connection';
import { notifyOnChange } from './notify';

type TaskList = { items: Task[]; nextCursor: string | null };

/** Insert or replace a task in a list sorted newest first; drop it when deleted; never go back a version. */
export function upsertTask(list: TaskList, task: Task): TaskList {
  const i = list.items.findIndex((t) => t.id === task.id);
  if (i >= 0) {
    const old = list.items[i]!;
    if (old.version > task.version) return list;
    if (task.deleted) return { ...list, items: list.items.filter((t) => t.id !== task.id) };
    const items = list.items.slice();
    items[i] = task;
    return { ...list, items };
  }
  if (task.deleted) return list;
  const items = [task, ...list.items].sort((a, b) =>
    a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1,
  );
  return { ...list, items };
}

/**
 * A refresh asked for in bursts: one run per burst (trailing, `ms` after the first ask), never two
 * at once, and an ask that arrives while a run is under way gets one more run after it. A refetch
 * that a newer ask cancelled would starve: with events every 250 ms and a server slower than that,
 * the panel would show the old answer for as long as the events go on.
 */
export function coalescedRefresh(refresh: () => Promise<unknown>, ms: number): { ask: () => void; dispose: () => void } {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    running = true;
    try {
      await refresh();
    } catch {
      // The query shows its own error; the next ask tries again.
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      timer = setTimeout(() => void run(), ms);
    }
  };
  return {
    ask() {
      if (running) again = true;
      else timer ??= setTimeout(() => void run(), ms);
    },
    /** Drops a pending run (an unmounted panel); a run under way finishes. */
    dispose() {
      again = false;
      if (timer) clearTimeout(timer);
      timer = null;
    },
  };
}

function useCoalescedRefresh(refresh: () => Promise<unknown>, ms: number): () => void {
  const refreshRef = useRef(refresh);
  refreshRef.current = refresh;
  const [coalesced] = useState(() => coalescedRefresh(() => refreshRef.current(), ms));
  useEffect(() => () => coalesced.dispose(), [coalesced]);
  return coalesced.ask;
}

export interface LiveFeed {
  /** Id (log position) of the last event applied. */
  lastEventId: string | null;
  /** Number of events applied since the panel opened. */
  received: number;
}

export function useLiveUpdates(): LiveFeed {
  const trpc = useTRPC();
  const qc = useQueryClient();
  const lastId = useRef<string | null>(null);
  const [received, setReceived] = useState(0);
  // Resubscribing after a hard failure: unsubscribe (paused), then subscribe from the last id.
  const [resumeFrom, setResumeFrom] = useState<string | null>(null);
  const [paused, setPaused] = useState(false);
  const retryTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  // Queue positions depend on every task, so the queue is refetched (once per burst of events).
  // Open timelines follow their task's version (TaskDetail).
  const refreshQueue = useCoalescedRefresh(() => qc.invalidateQueries({ queryKey: trpc.queue.get.queryKey() }), 300);

  const refetchAll = useCallback(() => refetchEverything(qc), [qc]);

  useEffect(() => onRecovered(refetchAll), [refetchAll]);
  useEffect(() => () => void (retryTimer.current && clearTimeout(retryTimer.current)), []);

  useSubscription(
    trpc.tasks.onUpdate.subscriptionOptions(paused ? skipToken : resumeFrom ? { lastEventId: resumeFrom } : {}, {
      onStarted() {
        markUp('feed');
        // Anything committed between the lists' fetch and the feed's start (or while it was
        // away) is in a fresh fetch.
        refetchAll();
      },
      onData(msg) {
        lastId.current = msg.id;
        const { task } = msg.data;
        if (task) {
          const prev =
            qc.getQueryData(trpc.tasks.get.queryKey({ id: task.id })) ??
            qc.getQueryData(trpc.tasks.list.queryKey(TASK_LIST_INPUT))?.items.find((t) => t.id === task.id);
          notifyOnChange(prev, task);
          qc.setQueryData(trpc.tasks.list.queryKey(TASK_LIST_INPUT), (old) => (old ? upsertTask(old, task) : old));
          qc.setQueryData(trpc.tasks.get.queryKey({ id: task.id }), task);
        }
        refreshQueue();
        setReceived((n) => n + 1);
      },
      onConnectionStateChange(state) {
        if (state.state === 'connecting' && state.error) markDown('feed');
      },
      onError(err) {
        markDown('feed');
        // A position the server no longer has (e.g. its data was reset): start from now.
        const badCursor = err.data?.code === 'BAD_REQUEST';
        setPaused(true);
        if (retryTimer.current) clearTimeout(retryTimer.current);
        retryTimer.current = setTimeout(() => {
          setResumeFrom(badCursor ? null : lastId.current);
          setPaused(false);
        }, 2000);
      },
    }),
  );

  // Deployments hold GPUs too, on a feed of their own (the task feed carries only tasks): a
  // deployment placed, asleep or stopped moves the queue's holders and the Serve cells, so both
  // are refetched with it rather than at their next poll. After an error the feed starts again
  // (records, not positions: nothing to resume from), and what it missed is in the refetch.
  const refreshDeployments = useCoalescedRefresh(() => qc.invalidateQueries({ queryKey: trpc.deployments.list.queryKey() }), 300);
  const [deploymentFeedDown, setDeploymentFeedDown] = useState(false);
  useEffect(() => {
    if (!deploymentFeedDown) return;
    const t = setTimeout(() => setDeploymentFeedDown(false), 2000);
    return () => clearTimeout(t);
  }, [deploymentFeedDown]);
  useSubscription(
    trpc.deployments.onUpdate.subscriptionOptions(deploymentFeedDown ? skipToken : undefined, {
      onStarted() {
        refreshDeployments();
        refreshQueue();
      },
      onData() {
        refreshDeployments();
        refreshQueue();
      },
      onError() {
        setDeploymentFeedDown(true);
      },
    }),
  );

  return { lastEventId: lastId.current, received };
}

function refetchEverything(qc: QueryClient): void {
  void qc.invalidateQueries();
}
