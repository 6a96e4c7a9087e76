// The Studio panel: GPU and new-task form on the left, queue and live task table on the right;
// on a service in tokens mode, a login box first, and who is signed in at the top.
import { useQuery } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { errorInfo, TASK_LIST_INPUT, useTRPC, type Me } from './api';
import { LoginBox } from './components/LoginBox';
import { GpuCard } from './components/GpuCard';
import { NewTaskForm } from './components/NewTaskForm';
import { QueueView } from './components/QueueView';
import { TaskTable } from './components/TaskTable';
import { markDown, markUp, useConnection, type ConnectionStatus } from './connection';
import { useLiveUpdates } from './live';
import { askPermission, permission, savePrefs, useNotifyPrefs, type Permission } from './notify';
import { signOut, useSession } from './session';

/** Who is calling decides what shows: the login box while the service refuses, else the panel. */
export function App() {
  const trpc = useTRPC();
  const session = useSession();
  const me = useQuery(trpc.users.me.queryOptions(undefined, { retry: false, staleTime: Infinity }));
  if (me.error && errorInfo(me.error).code === 'UNAUTHORIZED')
    return (
      <div className="app">
        <header className="topbar">
          <Brand />
        </header>
        <LoginBox notice={session.notice} checking={me.isFetching} />
      </div>
    );
  // Unreachable or still asking: the panel, which says when the connection is lost.
  return <Panel me={me.data ?? null} />;
}

function Panel({ me }: { me: Me | null }) {
  const trpc = useTRPC();
  const live = useLiveUpdates();
  const conn = useConnection();

  const health = useQuery(
    trpc.system.health.queryOptions(undefined, { refetchInterval: 4000, retry: false, refetchIntervalInBackground: true }),
  );
  const gpu = useQuery(trpc.system.gpuInfo.queryOptions(undefined, { refetchInterval: 10_000 }));
  const tasks = useQuery(trpc.tasks.list.queryOptions(TASK_LIST_INPUT));
  // Task changes refresh the queue at once (live.ts); this catches what changes without a task
  // event: devices coming and going, memory other programs take or free.
  const queue = useQuery(trpc.queue.get.queryOptions(undefined, { refetchInterval: 10_000 }));

  useEffect(() => {
    if (health.isError) markDown('health');
    else if (health.isSuccess) markUp('health');
  }, [health.isError, health.isSuccess, health.dataUpdatedAt, health.errorUpdatedAt]);

  // Re-render durations ("running 2m 10s") every few seconds.
  const [, tick] = useState(0);
  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 5000);
    return () => clearInterval(t);
  }, []);

  const err = (e: unknown) => (e ? errorInfo(e).message : null);

  return (
    <div className="app">
      <div className="sticky-top">
        <ConnectionBanner status={conn} />
        <header className="topbar">
          <Brand />
          <div className="topbar-right">
            {health.data ? (
              <span className="muted small" data-testid="server-info" title={health.data.detail?.location}>
                {health.data.storage === 'pglite' ? 'embedded database' : 'Postgres'} · {health.data.activeTrainers} trainer
                {health.data.activeTrainers === 1 ? '' : 's'} running · v{health.data.version}
              </span>
            ) : null}
            {health.data && !health.data.ok ? <span className="pill pill-high">{health.data.error ?? 'database down'}</span> : null}
            <NotifyToggle />
            <ConnectionPill status={conn} events={live.received} />
            {me?.auth === 'tokens' ? <SignedIn me={me} /> : null}
          </div>
        </header>
      </div>
      <main className="layout">
        <aside className="col-side">
          <GpuCard gpu={gpu.data} error={gpu.data ? null : err(gpu.error)} />
          <NewTaskForm gpu={gpu.data} queue={queue.data} />
        </aside>
        <div className="col-main">
          <QueueView queue={queue.data} error={err(queue.error)} />
          <TaskTable
            tasks={tasks.data?.items}
            more={!!tasks.data?.nextCursor}
            queue={queue.data}
            loading={tasks.isLoading}
            error={err(tasks.error)}
          />
        </div>
      </main>
    </div>
  );
}

function ConnectionBanner({ status }: { status: ConnectionStatus }) {
  if (status !== 'lost' && status !== 'recovered') return null;
  return (
    <div className={`conn-banner conn-${status}`} data-testid="conn-banner" data-state={status} role="status" aria-live="polite">
      {status === 'lost' ? (
        <>
          <span className="spinner spinner-light" aria-hidden />
          Connection lost — reconnecting…
          <span className="conn-sub">Changes made meanwhile appear once the server is back.</span>
        </>
      ) : (
        <>✓ Reconnected — up to date</>
      )}
    </div>
  );
}

/** The opt-in to browser notifications of every task's ending (asks the browser's permission on the click). */
function NotifyToggle() {
  const prefs = useNotifyPrefs();
  const [perm, setPerm] = useState<Permission>(permission);
  const on = prefs.all && perm === 'granted';
  const label =
    perm === 'unsupported'
      ? 'This browser cannot show notifications'
      : perm === 'denied'
        ? 'Notifications are blocked for this site in the browser'
        : on
          ? 'Notifying when tasks end (click to stop)'
          : 'Notify me when tasks end';
  return (
    <button
      type="button"
      className={`notify-toggle${on ? ' active' : ''}`}
      data-testid="notify-toggle"
      aria-pressed={on}
      title={label}
      aria-label={label}
      disabled={perm === 'unsupported' || perm === 'denied'}
      onClick={async () => {
        if (on) return savePrefs({ ...prefs, all: false });
        const ok = await askPermission();
        setPerm(permission());
        if (ok) savePrefs({ ...prefs, all: true });
      }}
    >
      <span aria-hidden>{on ? '🔔' : '🔕'}</span> {on ? 'Notifying' : 'Notify'}
    </button>
  );
}

function ConnectionPill({ status, events }: { status: ConnectionStatus; events: number }) {
  const label = status === 'online' || status === 'recovered' ? 'Live' : status === 'lost' ? 'Offline' : 'Connecting';
  return (
    <span className={`conn-pill conn-pill-${status}`} data-testid="conn-pill" data-state={status} title={`${events} live updates received`}>
      <i aria-hidden />
      {label}
    </span>
  );
}

function Brand() {
  return (
    <div className="brand">
      <Logo />
      <span className="brand-name">Trainyard</span>
      <span className="brand-sub">Studio</span>
    </div>
  );
}

/** Who this tab is signed in as (tokens mode), and the way out. */
function SignedIn({ me }: { me: Me }) {
  const expires = me.token?.expiresAt ? `token expires ${new Date(me.token.expiresAt).toLocaleString()}` : 'token without expiry';
  return (
    <span className="signed-in small" data-testid="signed-in" data-user={me.name} title={expires}>
      Signed in as <strong>{me.name}</strong>
      {me.admin ? <span className="pill pill-low">admin</span> : null}
      <button type="button" className="btn btn-ghost btn-small" onClick={signOut} data-testid="sign-out">
        Sign out
      </button>
    </span>
  );
}

function Logo() {
  return (
    <svg viewBox="0 0 32 32" width="26" height="26" aria-hidden>
      <rect width="32" height="32" rx="7" fill="#4f46e5" />
      <path d="M8 22h16M10 22V12l6-3 6 3v10" stroke="white" strokeWidth="2.4" fill="none" strokeLinejoin="round" />
    </svg>
  );
}
