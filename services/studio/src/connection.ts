// Whether the panel can reach the server, from two sources: the live update feed (its
// EventSource drops and reconnects) and a light health poll. Lost when either is down;
// "recovered" for a few seconds once both are back, then "online".
import { useSyncExternalStore } from 'react';

export type ConnectionStatus = 'connecting' | 'online' | 'lost' | 'recovered';
type Source = 'feed' | 'health';

let status: ConnectionStatus = 'connecting';
const down = new Set<Source>();
const up = new Set<Source>();
const listeners = new Set<() => void>();
const recoveredListeners = new Set<() => void>();
let recoveredTimer: ReturnType<typeof setTimeout> | null = null;

function set(next: ConnectionStatus) {
  if (next === status) return;
  status = next;
  for (const l of listeners) l();
}

export function markDown(source: Source): void {
  down.add(source);
  up.delete(source);
  if (recoveredTimer) clearTimeout(recoveredTimer);
  recoveredTimer = null;
  // Before the first success this is still "connecting"; after it, a drop is "lost".
  if (status !== 'connecting' || source === 'health') set('lost');
}

export function markUp(source: Source): void {
  down.delete(source);
  up.add(source);
  if (down.size) return;
  if (status === 'lost') {
    set('recovered');
    for (const l of recoveredListeners) l();
    recoveredTimer = setTimeout(() => set('online'), 4000);
  } else if (status === 'connecting' && up.has('feed')) {
    set('online');
  }
}

/** Called once each time the connection comes back (to refetch what may have changed). */
export function onRecovered(listener: () => void): () => void {
  recoveredListeners.add(listener);
  return () => recoveredListeners.delete(listener);
}

export function useConnection(): ConnectionStatus {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => status,
  );
}
