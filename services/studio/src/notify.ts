// Browser notifications when a task ends (opt-in): every task the panel shows (the header's bell),
// or the tasks followed one by one (a task's "Notify me" button). Which change is an ending, and
// what the notification says, is decided here from the task before and after the change; the
// choice is kept in this browser (localStorage).
import { useEffect, useState } from 'react';
import type { Task } from './api';

export interface NotifyPrefs {
  /** Every task's ending. */
  all: boolean;
  /** Tasks followed one by one. */
  tasks: string[];
}

const KEY = 'trainyard.notifications';
const CHANGED = 'trainyard-notify-prefs';

function loadPrefs(): NotifyPrefs {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) ?? 'null') as Partial<NotifyPrefs> | null;
    return { all: v?.all === true, tasks: Array.isArray(v?.tasks) ? v.tasks.filter((t) => typeof t === 'string').slice(-200) : [] };
  } catch {
    return { all: false, tasks: [] };
  }
}

export function savePrefs(p: NotifyPrefs): void {
  localStorage.setItem(KEY, JSON.stringify(p));
  window.dispatchEvent(new Event(CHANGED));
}

/** The preferences, kept current across components. */
export function useNotifyPrefs(): NotifyPrefs {
  const [prefs, setPrefs] = useState(loadPrefs);
  useEffect(() => {
    const on = () => setPrefs(loadPrefs());
    window.addEventListener(CHANGED, on);
    window.addEventListener('storage', on);
    return () => {
      window.removeEventListener(CHANGED, on);
      window.removeEventListener('storage', on);
    };
  }, []);
  return prefs;
}

export type Permission = 'granted' | 'denied' | 'default' | 'unsupported';

export function permission(): Permission {
  return typeof Notification === 'undefined' ? 'unsupported' : Notification.permission;
}

/** Ask the browser (on a click: browsers allow the prompt only then); true when notifications may be shown. */
export async function askPermission(): Promise<boolean> {
  if (typeof Notification === 'undefined') return false;
  if (Notification.permission === 'granted') return true;
  if (Notification.permission === 'denied') return false;
  return (await Notification.requestPermission()) === 'granted';
}

interface Notice {
  title: string;
  body: string;
  /** One notification per task and ending: a repeat replaces it. */
  tag: string;
}

const ENDED = new Set(['COMPLETED', 'FAILED', 'CANCELLED']);

/**
 * Given a task before a change (undefined: not known here) and after it, then the notice its
 * ending calls for: completed, failed (with why), cancelled, or preempted (back in the queue; it
 * resumes). Null for any other change, and for a task that had ended already.
 */
function endingNotice(prev: Task | undefined, next: Task): Notice | null {
  const name = next.spec.name;
  if (ENDED.has(next.status) && prev?.status !== next.status && !(prev && ENDED.has(prev.status))) {
    if (next.status === 'COMPLETED')
      return { title: `Completed: ${name}`, body: `Task ${next.id} finished training.`, tag: `${next.id}:end` };
    if (next.status === 'FAILED')
      return {
        title: `Failed: ${name}`,
        body: next.error?.message ? `${next.error.message}` : `Task ${next.id} failed.`,
        tag: `${next.id}:end`,
      };
    return { title: `Cancelled: ${name}`, body: `Task ${next.id} was cancelled.`, tag: `${next.id}:end` };
  }
  if (prev && next.preemptions > prev.preemptions)
    return {
      title: `Preempted: ${name}`,
      body: `Task ${next.id} went back to the queue; it resumes from its checkpoint.`,
      tag: `${next.id}:preempted:${next.preemptions}`,
    };
  return null;
}

/** Show the notice for this change when the task is followed and the browser allows it. */
export function notifyOnChange(prev: Task | undefined, next: Task): void {
  const prefs = loadPrefs();
  if (!prefs.all && !prefs.tasks.includes(next.id)) return;
  if (permission() !== 'granted') return;
  const notice = endingNotice(prev, next);
  if (!notice) return;
  try {
    new Notification(notice.title, { body: notice.body, tag: notice.tag });
  } catch {
    // Some browsers allow notifications only from a service worker: nothing more to do here.
  }
}
