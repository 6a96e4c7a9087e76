// Tasks' progress series (tasks.metrics), held once for the whole panel: a task's detail and the
// comparison chart read the same series. Each is loaded a page at a time, then only what came
// after the last report held, whenever the task moves on (its version changes); the log is
// append-only, so nothing held changes. Another client (another token) starts afresh.
import { useEffect, useSyncExternalStore } from 'react';
import { useTRPCClient, type ProgressPoint } from './api';

type Client = ReturnType<typeof useTRPCClient>;

export interface Series {
  points: ProgressPoint[];
  /** The most GPU memory its trainer was seen holding (GB), while this service ran it. */
  peakMemoryGb: number | null;
  loaded: boolean;
  error: string | null;
}

interface Entry extends Series {
  cursor: string | null;
  /** The task version the series is wanted for, and the one it was last read at. */
  want: number;
  read: number;
  busy: boolean;
}

const EMPTY: Series = { points: [], peakMemoryGb: null, loaded: false, error: null };
const PAGE = 5000;

let owner: Client | null = null;
let entries = new Map<string, Entry>();
const listeners = new Set<() => void>();

function publish(id: string, e: Entry): void {
  entries = new Map(entries).set(id, e);
  for (const l of listeners) l();
}

async function load(client: Client, id: string): Promise<void> {
  let e = entries.get(id)!;
  publish(id, (e = { ...e, busy: true }));
  try {
    while (e.read < e.want) {
      const version = e.want;
      const added: ProgressPoint[] = [];
      let cursor = e.cursor;
      let peak = e.peakMemoryGb;
      for (;;) {
        const r = await client.tasks.metrics.query({ id, after: cursor, limit: PAGE });
        if (owner !== client) return;
        added.push(...r.points);
        if (r.points.length) cursor = r.points[r.points.length - 1]!.position;
        peak = r.peakMemoryGb;
        if (!r.nextCursor) break;
      }
      e = entries.get(id)!;
      e = {
        ...e,
        points: added.length ? e.points.concat(added) : e.points,
        cursor,
        peakMemoryGb: peak,
        read: version,
        loaded: true,
        error: null,
      };
      publish(id, e);
    }
  } catch (err) {
    if (owner === client) publish(id, (e = { ...entries.get(id)!, error: (err as Error).message, read: entries.get(id)!.want }));
  } finally {
    if (owner === client) publish(id, { ...entries.get(id)!, busy: false });
  }
}

function want(client: Client, id: string, version: number): void {
  if (owner !== client) {
    owner = client;
    entries = new Map();
  }
  const e = entries.get(id) ?? { ...EMPTY, cursor: null, want: -1, read: -1, busy: false };
  if (version <= e.want && (e.busy || e.read >= version)) return;
  entries = new Map(entries).set(id, { ...e, want: Math.max(e.want, version) });
  if (!e.busy) void load(client, id);
}

/** The series of these tasks (by id), kept current with each task's version. */
export function useSeries(tasks: readonly { id: string; version: number }[]): ReadonlyMap<string, Series> {
  const client = useTRPCClient();
  const key = tasks.map((t) => `${t.id}@${t.version}`).join(',');
  useEffect(() => {
    for (const t of tasks) want(client, t.id, t.version);
    // `key` names exactly the ids and versions.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, key]);
  const all = useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => entries,
  );
  return owner === client ? all : new Map();
}

export function seriesOf(all: ReadonlyMap<string, Series>, id: string): Series {
  return all.get(id) ?? EMPTY;
}
