// An expanded task: its settings, what it asks for and the devices it holds, why it waits (a
// queued task) or why it started when it did (the grounds recorded with its assignment), its live
// log (tasks.onLogs, resumed from the last line seen) and its event timeline (events.list) with a
// replay slider (events.replay) that shows the task's state after each event.
import { keepPreviousData, skipToken, useQuery } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import { isActive, isTerminal, useTRPC, useTRPCClient, type QueuedEntry, type ReplayResult, type StoredEvent, type Task } from '../api';
import {
  devicesText,
  duration,
  EVENT_LABEL,
  EXPECTED_START_NOTE,
  fullTime,
  gbOfMb,
  groundsText,
  requestText,
  shortTime,
  WAIT_LABEL,
} from '../format';
import { FailureCard, TaskActions, TaskResults } from './Results';
import { TrainingCharts } from './Training';
import { ProgressBar, StatusBadge } from './ui';
import { askPermission, permission, savePrefs, useNotifyPrefs } from '../notify';

/** Follow one task: a browser notification when it ends (asks the browser's permission on the click). */
function FollowButton({ task }: { task: Task }) {
  const prefs = useNotifyPrefs();
  const [perm, setPerm] = useState(permission);
  const following = perm === 'granted' && (prefs.all || prefs.tasks.includes(task.id));
  if (perm === 'unsupported') return null;
  return (
    <button
      type="button"
      className="btn btn-small"
      data-testid="follow-btn"
      aria-pressed={following}
      disabled={perm === 'denied' || (perm === 'granted' && prefs.all)}
      title={
        perm === 'denied'
          ? 'Notifications are blocked for this site in the browser'
          : prefs.all && perm === 'granted'
            ? 'Notifying of every task (the bell at the top)'
            : undefined
      }
      aria-label={`${following ? 'Stop notifying' : 'Notify me'} when ${task.spec.name} ends`}
      onClick={async () => {
        if (following) return savePrefs({ ...prefs, tasks: prefs.tasks.filter((t) => t !== task.id) });
        const ok = await askPermission();
        setPerm(permission());
        if (ok) savePrefs({ ...prefs, tasks: [...prefs.tasks.filter((t) => t !== task.id), task.id] });
      }}
    >
      {following ? '🔔 Notifying when it ends' : 'Notify me when it ends'}
    </button>
  );
}

export function TaskDetail({ task, queued = null }: { task: Task; queued?: QueuedEntry | null }) {
  const c = task.spec.config;
  const taskEvents = useTaskEvents(task.id, task.version);
  const assigned = lastAssignment(taskEvents.events);
  const quant = c.load4bit ? '4-bit' : c.load8bit ? '8-bit' : '16-bit';
  return (
    <div className="detail" data-testid="task-detail" data-task-id={task.id}>
      <TaskActions task={task} />
      {isTerminal(task.status) ? null : <FollowButton task={task} />}
      <dl className="spec">
        <div className="spec-half">
          <dt>Model</dt>
          <dd className="mono" title={task.spec.model}>
            {task.spec.model}
          </dd>
        </div>
        <div className="spec-half">
          <dt>Dataset</dt>
          <dd className="mono" title={task.spec.datasetPath}>
            {task.spec.datasetPath}
          </dd>
        </div>
        <div className="spec-full">
          <dt>Training</dt>
          <dd>
            {c.epochs} epoch{c.epochs === 1 ? '' : 's'} · batch {c.batchSize} × {c.gradientAccumulation} · max length {c.maxLength} ·
            learning rate {c.learningRate} · LoRA rank {c.loraRank}, alpha {c.loraAlpha} · {quant} weights
          </dd>
        </div>
        <div>
          <dt>Output</dt>
          <dd className="mono" title={task.spec.outputDir}>
            {task.spec.outputDir}
          </dd>
        </div>
        <div>
          <dt>Owner</dt>
          <dd>
            {task.spec.owner}
            {task.attempt > 1 ? ` · attempt ${task.attempt}` : ''}
          </dd>
        </div>
        <div>
          <dt>Run time</dt>
          <dd>
            {task.startedAt ? duration(task.startedAt, task.finishedAt) : 'not started'} · timeout {formatHours(task.spec.timeoutMs)}
          </dd>
        </div>
        <div>
          <dt>Resources</dt>
          <dd data-testid="task-request">{requestText(task.spec.resources)}</dd>
        </div>
        <div>
          <dt>Devices</dt>
          <dd className="mono" data-testid="task-devices-detail">
            {task.devices.length
              ? task.devices.map((d) => `${devicesText([d])} ${d.exclusive ? 'whole' : `${gbOfMb(d.memoryMb)} shared`}`).join(' + ')
              : isTerminal(task.status)
                ? 'none (ended)'
                : 'none yet'}
          </dd>
        </div>
      </dl>
      {queued ? (
        <div className="alert alert-muted task-waits" data-testid="task-waits" data-reason={queued.reason.code}>
          <span className={`reason-badge reason-${queued.reason.code.toLowerCase()}`}>
            {WAIT_LABEL[queued.reason.code] ?? queued.reason.code}
          </span>{' '}
          #{queued.position} in the queue: {queued.reason.message}
          {queued.expectedStart ? (
            <div className="expected-start" data-testid="expected-start" title={EXPECTED_START_NOTE}>
              Starts by <strong>{shortTime(queued.expectedStart)}</strong> at the latest (from the timeouts of the tasks running and ahead
              of it).
            </div>
          ) : null}
        </div>
      ) : null}
      {assigned ? (
        <div className="placement-grounds" data-testid="placement-grounds" data-backfilled={assigned.data.grounds?.backfilled ?? false}>
          <strong>Placed on {devicesText(assigned.data.devices)}</strong> at {shortTime(assigned.recordedAt)}
          {assigned.data.grounds ? (
            <>
              {' '}
              · {groundsText(assigned.data.grounds)} <GroundsDevices grounds={assigned.data.grounds} />
            </>
          ) : null}
        </div>
      ) : null}
      {task.error ? <FailureCard task={task} assigned={assigned} /> : null}
      {task.stop && task.status !== 'CANCELLED' ? (
        <div className="alert alert-warn">
          Stopping: {task.stop.message} (by {task.stop.by})
        </div>
      ) : null}
      {task.cancelReason ? <div className="alert alert-muted">Cancelled: {task.cancelReason}</div> : null}
      <TaskResults task={task} />
      {task.startedAt ? <TrainingCharts task={task} /> : null}
      <div className="detail-grid">
        <LogView taskId={task.id} status={task.status} />
        <Timeline task={task} taskEvents={taskEvents} />
      </div>
    </div>
  );
}

type Assignment = Extract<StoredEvent, { type: 'TaskAssigned' }>;

/** The task's latest assignment (a retried task has one per attempt). */
function lastAssignment(events: readonly StoredEvent[]): Assignment | null {
  for (let i = events.length - 1; i >= 0; i--) if (events[i]!.type === 'TaskAssigned') return events[i] as Assignment;
  return null;
}

/** The devices as the scheduler saw them when it placed the task: memory, other programs, our tasks. */
function GroundsDevices({ grounds }: { grounds: NonNullable<Assignment['data']['grounds']> }) {
  return (
    <span className="muted small" data-testid="grounds-devices">
      {grounds.devices
        .map(
          (d) =>
            `${d.deviceId}: ${d.memoryMb ? gbOfMb(d.memoryMb) : 'memory unknown'}` +
            `${d.externalMemoryMb ? `, ${gbOfMb(d.externalMemoryMb)} other programs` : ''}` +
            `${d.holders ? `, ${d.holders} task${d.holders === 1 ? '' : 's'} holding ${gbOfMb(d.heldMb)}` : ', free'}`,
        )
        .join('; ')}
    </span>
  );
}

function formatHours(ms: number): string {
  const h = ms / 3_600_000;
  return h >= 1 ? `${Math.round(h * 10) / 10} h` : `${Math.round(ms / 60_000)} min`;
}

interface LogLine {
  seq: number;
  stream: 'stdout' | 'stderr';
  line: string;
  at: string;
}
const MAX_LINES = 5000;

function LogView({ taskId, status }: { taskId: string; status: Task['status'] }) {
  const trpc = useTRPC();
  const client = useTRPCClient();
  const [lines, setLines] = useState<LogLine[]>([]);
  const lastSeq = useRef(0);
  const buffer = useRef<LogLine[]>([]);
  const frame = useRef<number | null>(null);
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const [paused, setPaused] = useState(false);
  const [resumeFrom, setResumeFrom] = useState<string | null>(null);
  const [state, setState] = useState<'connecting' | 'live' | 'reconnecting'>('connecting');
  const [loadError, setLoadError] = useState<string | null>(null);
  // A running task's log is streamed; a waiting task has none yet; a finished one is read once.
  // (Each stream holds one of the browser's few connections to the server, so only running
  // tasks get one.)
  const running = isActive(status);
  const finished = isTerminal(status);
  // The trainer's last lines may be stored just after the task ends: keep streaming a little
  // longer when it ends while we watch, then read the rest once.
  const [lingering, setLingering] = useState(false);
  const [prevRunning, setPrevRunning] = useState(running);
  if (prevRunning !== running) {
    // Adjusting state during render (React's pattern for "state from the previous render"),
    // so the stream is never closed and reopened in between.
    setPrevRunning(running);
    if (prevRunning && !running) setLingering(true);
  }
  useEffect(() => {
    if (!lingering) return;
    const t = setTimeout(() => setLingering(false), 8000);
    return () => clearTimeout(t);
  }, [lingering]);
  const streaming = running || lingering;

  useEffect(() => () => void (frame.current !== null && cancelAnimationFrame(frame.current)), []);

  const push = (add: LogLine[]) => {
    for (const l of add) {
      if (l.seq <= lastSeq.current) continue;
      lastSeq.current = l.seq;
      buffer.current.push(l);
    }
    // Many lines arrive at once (the log so far): render once per frame.
    frame.current ??= requestAnimationFrame(() => {
      frame.current = null;
      const batch = buffer.current;
      buffer.current = [];
      if (!batch.length) return;
      setLines((prev) => {
        const next = prev.concat(batch);
        return next.length > MAX_LINES ? next.slice(next.length - MAX_LINES) : next;
      });
    });
  };

  useSubscription(
    trpc.tasks.onLogs.subscriptionOptions(
      // Input changes only on a resubscribe (resumeFrom), never per line; within one subscription
      // the link itself resumes from the last line id after a dropped connection.
      !streaming || paused ? skipToken : { id: taskId, ...(resumeFrom ? { lastEventId: resumeFrom } : {}) },
      {
        onStarted: () => setState('live'),
        onData: (msg) => push([msg.data as LogLine]),
        onConnectionStateChange(s) {
          if (s.state === 'connecting' && s.error) setState('reconnecting');
        },
        onError() {
          setState('reconnecting');
          setPaused(true);
          setTimeout(() => {
            setResumeFrom(lastSeq.current ? String(lastSeq.current) : null);
            setPaused(false);
          }, 2000);
        },
      },
    ),
  );

  // A finished task: read what is stored after the last line shown (all of it when just opened).
  useEffect(() => {
    if (!finished || streaming) return;
    let cancelled = false;
    void (async () => {
      let after = lastSeq.current;
      for (let page = 0; page < 20; page++) {
        const r = await client.tasks.logs.query({ id: taskId, afterSeq: after, limit: 5000 });
        if (cancelled) return;
        push(r.lines as LogLine[]);
        after = r.nextSeq;
        if (!r.hasMore) break;
      }
    })().catch((err: Error) => !cancelled && setLoadError(err.message));
    return () => {
      cancelled = true;
    };
  }, [finished, streaming, taskId, client]);

  useLayoutEffect(() => {
    const el = box.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lines]);

  return (
    <div className="panel">
      <div className="panel-head">
        <h3>Log</h3>
        <span className="muted small" data-testid="log-state">
          {lines.length} line{lines.length === 1 ? '' : 's'}
          {running ? (state === 'live' ? ' · live' : state === 'reconnecting' ? ' · reconnecting…' : ' · connecting…') : ''}
        </span>
      </div>
      <div
        className="log"
        ref={box}
        tabIndex={0}
        role="region"
        aria-label="Log"
        data-testid="task-logs"
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {lines.length === 0 ? (
          <div className="log-empty">
            {loadError
              ? `Could not load the log: ${loadError}`
              : running
                ? 'Waiting for output…'
                : finished
                  ? 'No output.'
                  : 'The log starts when the task does.'}
          </div>
        ) : (
          lines.map((l) => (
            <div key={l.seq} className={`log-line ${l.stream === 'stderr' ? 'log-stderr' : ''}`} data-testid="log-line" data-seq={l.seq}>
              <span className="log-time">{shortTime(l.at)}</span>
              <span className="log-text">{l.line}</span>
            </div>
          ))
        )}
      </div>
    </div>
  );
}

interface Group {
  key: string;
  first: StoredEvent;
  last: StoredEvent;
  count: number;
}

/** Consecutive progress events fold into one row. */
function group(events: StoredEvent[]): Group[] {
  const out: Group[] = [];
  for (const e of events) {
    const prev = out[out.length - 1];
    if (prev && e.type === 'ProgressRecorded' && prev.last.type === 'ProgressRecorded') {
      prev.last = e;
      prev.count += 1;
    } else out.push({ key: e.position, first: e, last: e, count: 1 });
  }
  return out;
}

function describe(g: Group): string {
  const e = g.first;
  switch (e.type) {
    case 'TaskSubmitted':
      return `${e.data.spec.model.split('/').pop()} on ${e.data.spec.datasetPath.split('/').pop()}`;
    case 'TaskAssigned': {
      const why = groundsText(e.data.grounds);
      return `${devicesText(e.data.devices)} · attempt ${e.data.attempt}${why ? ` · ${why}` : ''}`;
    }
    case 'TrainerSpawned':
      return `pid ${e.data.pid}`;
    case 'ProgressRecorded': {
      const a = e.data;
      const b = g.last.type === 'ProgressRecorded' ? g.last.data : a;
      const step = a.step != null ? `step ${a.step}${g.count > 1 ? `→${b.step}` : ''}${b.totalSteps ? `/${b.totalSteps}` : ''}` : '';
      const loss = b.loss != null ? ` · loss ${g.count > 1 && a.loss != null ? `${a.loss.toFixed(3)}→` : ''}${b.loss.toFixed(3)}` : '';
      return `${step}${loss}`;
    }
    case 'ArtifactRecorded':
      return e.data.path;
    case 'StopRequested':
      return e.data.message;
    case 'TaskCompleted':
      return `exit code ${e.data.exitCode}`;
    case 'TaskFailed':
      return e.data.message;
    case 'TaskCancelled':
      return e.data.reason ?? '';
    default:
      return '';
  }
}

/**
 * The task's events, loaded incrementally: the first time all of them (page by page), then only
 * those after the last one held, each time the live task moves on (its version changes). The
 * log is append-only, so nothing held ever changes.
 */
function useTaskEvents(taskId: string, version: number) {
  const client = useTRPCClient();
  const [events, setEvents] = useState<StoredEvent[]>([]);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const cursor = useRef<string | null>(null);
  const busy = useRef(false);
  const again = useRef(false);
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);
  useEffect(() => {
    if (busy.current) {
      again.current = true;
      return;
    }
    busy.current = true;
    void (async () => {
      try {
        do {
          again.current = false;
          for (;;) {
            const r = await client.events.list.query({ taskId, cursor: cursor.current, limit: 1000 });
            if (!alive.current) return;
            const last = r.events[r.events.length - 1];
            if (last) {
              cursor.current = last.position;
              setEvents((prev) => prev.concat(r.events));
            }
            if (!r.nextCursor) break;
          }
        } while (again.current);
        setLoaded(true);
        setError(null);
      } catch (err) {
        if (alive.current) setError((err as Error).message);
      } finally {
        busy.current = false;
      }
    })();
  }, [client, taskId, version]);
  return { events, loaded, error };
}

function Timeline({ task, taskEvents }: { task: Task; taskEvents: ReturnType<typeof useTaskEvents> }) {
  const taskId = task.id;
  const trpc = useTRPC();
  const { events, loaded, error } = taskEvents;
  // null: follow the latest event; a number: the event the user picked.
  const [picked, setPicked] = useState<number | null>(null);
  const index = picked === null ? events.length - 1 : Math.min(picked, events.length - 1);
  const selected = index >= 0 ? events[index] : undefined;
  const groups = useMemo(() => group(events), [events]);
  const indexOf = useMemo(() => new Map(events.map((e, i) => [e.position, i])), [events]);
  // The state after the selected event, folded by the server up to that position (following the
  // latest event, that is the live task itself).
  const replay = useQuery(
    trpc.events.replay.queryOptions(selected && picked !== null ? { taskId, atPosition: selected.position } : skipToken, {
      placeholderData: keepPreviousData,
      staleTime: Infinity,
    }),
  );

  return (
    <div className="panel">
      <div className="panel-head">
        <h3>Timeline</h3>
        <span className="muted small">{loaded ? `${events.length} events` : ''}</span>
      </div>
      <ol className="timeline" data-testid="timeline" tabIndex={0} aria-label={`Events of ${task.spec.name}`}>
        {!loaded && !error ? <li className="tl-note muted">Loading…</li> : null}
        {error ? <li className="tl-note field-error">Could not load the events: {error}</li> : null}
        {groups.map((g) => {
          const isSelected =
            selected !== undefined &&
            BigInt(g.first.position) <= BigInt(selected.position) &&
            BigInt(selected.position) <= BigInt(g.last.position);
          return (
            <li
              key={g.key}
              className={`tl-item tl-${g.first.type} ${isSelected ? 'tl-selected' : ''}`}
              data-testid="timeline-event"
              data-type={g.first.type}
              onClick={() => {
                const i = indexOf.get(g.last.position);
                if (i !== undefined) setPicked(i === events.length - 1 ? null : i);
              }}
            >
              <span className="tl-dot" aria-hidden />
              <div className="tl-main">
                <span className="tl-label">
                  {EVENT_LABEL[g.first.type] ?? g.first.type}
                  {g.count > 1 ? <span className="tl-count">×{g.count}</span> : null}
                </span>
                <span className="tl-desc">{describe(g)}</span>
              </div>
              <div className="tl-meta" title={fullTime(g.last.recordedAt)}>
                <span>{shortTime(g.last.recordedAt)}</span>
                <span className="tl-actor">by {g.first.metadata.actor}</span>
              </div>
            </li>
          );
        })}
      </ol>
      {events.length ? (
        <div className="replay" data-testid="replay">
          <div className="replay-head">
            <label htmlFor={`replay-${taskId}`}>Replay</label>
            <span className="muted small" data-testid="replay-position">
              event {index + 1} of {events.length}
              {picked === null ? ' · latest' : ''}
            </span>
          </div>
          <input
            id={`replay-${taskId}`}
            type="range"
            min={0}
            max={events.length - 1}
            step={1}
            value={index}
            data-testid="replay-slider"
            onChange={(e) => {
              const v = Number(e.target.value);
              setPicked(v === events.length - 1 ? null : v);
            }}
          />
          {picked === null && selected ? (
            <ReplayState state={task} event={selected} stale={false} />
          ) : replay.data?.state && replay.data.event ? (
            <ReplayState state={replay.data.state} event={replay.data.event} stale={replay.data.event.position !== selected?.position} />
          ) : null}
        </div>
      ) : null}
    </div>
  );
}

function ReplayState({ state: s, event, stale }: { state: NonNullable<ReplayResult['state']>; event: StoredEvent; stale: boolean }) {
  return (
    <div
      className={`replay-state ${stale ? 'replay-stale' : ''}`}
      data-testid="replay-state"
      data-status={s.status}
      data-position={event.position}
    >
      <div className="replay-state-head">
        <span>
          After <strong>{EVENT_LABEL[event.type] ?? event.type}</strong> at {shortTime(event.recordedAt)} by {event.metadata.actor}
        </span>
        <StatusBadge status={s.status} stopping={!!s.stop} />
      </div>
      <ProgressBar task={s} compact />
      <div className="muted small">
        {s.devices.length ? `${devicesText(s.devices)} · ` : ''}attempt {s.attempt} · version {s.version}
        {s.error ? ` · ${s.error.message}` : ''}
      </div>
    </div>
  );
}
