// Who this panel signs in as, when the service is in tokens mode: the token lives in
// sessionStorage (this tab, until it closes; never in a cookie or the URL). A token the service
// refuses (expired, revoked) is forgotten at once, with the service's words kept for the login box.
import { useSyncExternalStore } from 'react';

const KEY = 'trainyard.token';

export interface Session {
  token: string | null;
  /** Why the login box is shown again (the service's answer to the last token), if it is. */
  notice: string | null;
}

function read(): string | null {
  try {
    return globalThis.sessionStorage?.getItem(KEY) || null;
  } catch {
    return null;
  }
}

let session: Session = { token: read(), notice: null };
const listeners = new Set<() => void>();

function set(next: Session): void {
  session = next;
  try {
    if (next.token) globalThis.sessionStorage?.setItem(KEY, next.token);
    else globalThis.sessionStorage?.removeItem(KEY);
  } catch {
    // Storage refused (private mode, quota): the token lasts until the page reloads.
  }
  for (const l of listeners) l();
}

export function currentToken(): string | null {
  return session.token;
}

export function signIn(token: string): void {
  set({ token: token.trim() || null, notice: null });
}

export function signOut(): void {
  set({ token: null, notice: null });
}

/**
 * The service answered UNAUTHORIZED: forget the token, and say why at the login box. Without a
 * token there is nothing to forget, and the login box says what to do.
 */
export function refused(message: string): void {
  if (session.token !== null) set({ token: null, notice: message });
}

export function useSession(): Session {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => session,
  );
}
