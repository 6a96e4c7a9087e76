// The task table: status, live progress, queue position and times for every task, kept current
// by the live feed. A row expands into the task's detail (live log and event timeline); cancel
// and delete ask for confirmation first.
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Fragment, useState } from 'react';
import {
  accounting,
  canCancel,
  canDelete,
  errorInfo,
  isActive,
  isTerminal,
  TASK_LIST_INPUT,
  taskSpeed,
  useTRPC,
  type QueueView,
  type Task,
  type TaskStatus,
} from '../api';
import {
  devicesText,
  EXPECTED_START_NOTE,
  fullTime,
  gpuHoursText,
  modelShort,
  requestText,
  shortTime,
  span,
  speedText,
  WAIT_LABEL,
} from '../format';
import { upsertTask } from '../live';
import { ConfirmDialog } from './ConfirmDialog';
import { TaskDetail } from './TaskDetail';
import { deploymentOf, ServeCell } from './Serve';
import { COMPARE_COLORS, CompareCard } from './Training';
import { Card, ProgressBar, StatusBadge } from './ui';

type Pending = { kind: 'cancel' | 'delete'; task: Task } | null;

export function TaskTable(props: {
  tasks: Task[] | undefined;
  more: boolean;
  queue: QueueView | undefined;
  loading: boolean;
  error: string | null;
}) {
  const { tasks, queue } = props;
  const trpc = useTRPC();
  const qc = useQueryClient();
  const [expanded, setExpanded] = useState<Set<string>>(new Set());
  const [pending, setPending] = useState<Pending>(null);
  const [reason, setReason] = useState('');
  const [actionError, setActionError] = useState<string | null>(null);
  const [filter, setFilter] = useState<'all' | 'active' | 'done'>('all');
  /** Tasks whose loss is compared, in the order they were picked. */
  const [compare, setCompare] = useState<string[]>([]);
  const toggleCompare = (id: string) => setCompare((c) => (c.includes(id) ? c.filter((x) => x !== id) : [...c, id]));
  const compared = compare.flatMap((id) => tasks?.find((t) => t.id === id) ?? []);

  const waiting = new Map(queue?.queued.map((q) => [q.task.id, q]) ?? []);
  const listKey = trpc.tasks.list.queryKey(TASK_LIST_INPUT);
  // Deployments of completed tasks ("Serve"), refreshed while any is on its way or asleep.
  const deployments = useQuery(
    trpc.deployments.list.queryOptions(undefined, {
      enabled: Boolean(tasks?.some((t) => t.status === 'COMPLETED')),
      refetchInterval: (q) => (q.state.data?.some((d) => d.status === 'STARTING' || d.status === 'SLEEPING') ? 1000 : 5000),
    }),
  );

  const close = () => {
    setPending(null);
    setReason('');
    setActionError(null);
  };
  const cancel = useMutation(
    trpc.tasks.cancel.mutationOptions({
      onSuccess(task) {
        qc.setQueryData(listKey, (old) => (old ? upsertTask(old, task) : old));
        close();
      },
      onError: (err) => setActionError(errorInfo(err).message),
    }),
  );
  const del = useMutation(
    trpc.tasks.delete.mutationOptions({
      onSuccess({ id }) {
        qc.setQueryData(listKey, (old) => (old ? { ...old, items: old.items.filter((t) => t.id !== id) } : old));
        close();
      },
      onError: (err) => setActionError(errorInfo(err).message),
    }),
  );

  const toggle = (id: string) =>
    setExpanded((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });

  const [search, setSearch] = useState('');
  const [owner, setOwner] = useState('');
  const [sort, setSort] = useState<SortKey>('newest');
  const owners = [...new Set((tasks ?? []).map((t) => t.spec.owner))].sort();
  const needle = search.trim().toLowerCase();
  const shown = sortTasks(
    (tasks ?? []).filter(
      (t) =>
        (filter === 'all' ? true : filter === 'active' ? !isTerminal(t.status) : isTerminal(t.status)) &&
        (!owner || t.spec.owner === owner) &&
        (!needle || [t.spec.name, t.spec.model, t.id, t.status].some((v) => v.toLowerCase().includes(needle))),
    ),
    sort,
  );
  const counts = {
    all: tasks?.length ?? 0,
    active: tasks?.filter((t) => !isTerminal(t.status)).length ?? 0,
  };

  return (
    <>
      {compared.length ? <CompareCard tasks={compared} onRemove={toggleCompare} onClear={() => setCompare([])} /> : null}
      <Card
        title="Tasks"
        testId="task-table"
        aside={
          <div className="segmented segmented-small" role="tablist" aria-label="Filter tasks">
            {(['all', 'active', 'done'] as const).map((k) => (
              <button
                key={k}
                type="button"
                role="tab"
                aria-selected={filter === k}
                className={filter === k ? 'active' : ''}
                onClick={() => setFilter(k)}
                data-testid={`filter-${k}`}
              >
                {k === 'all' ? `All ${counts.all}` : k === 'active' ? `Active ${counts.active}` : `Finished ${counts.all - counts.active}`}
              </button>
            ))}
          </div>
        }
      >
        <div className="task-filters" role="search">
          <input
            type="search"
            className="task-search"
            placeholder="Search name, model, id or status"
            aria-label="Search tasks by name, model, id or status"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
            data-testid="task-search"
          />
          {owners.length > 1 ? (
            <select aria-label="Owner" value={owner} onChange={(e) => setOwner(e.target.value)} data-testid="task-owner">
              <option value="">Everyone</option>
              {owners.map((o) => (
                <option key={o} value={o}>
                  {o}
                </option>
              ))}
            </select>
          ) : null}
          <select aria-label="Sort tasks" value={sort} onChange={(e) => setSort(e.target.value as SortKey)} data-testid="task-sort">
            {Object.entries(SORTS).map(([k, label]) => (
              <option key={k} value={k}>
                {label}
              </option>
            ))}
          </select>
        </div>
        {props.more && (needle || owner) ? (
          <p className="muted small" data-testid="search-scope">
            Searching the newest {TASK_LIST_INPUT.limit} tasks; <code>trainyard ls --search</code> searches them all.
          </p>
        ) : null}
        {props.error && !tasks ? <div className="alert alert-error">{props.error}</div> : null}
        {!tasks && props.loading ? <div className="detecting">Loading tasks…</div> : null}
        {tasks && shown.length === 0 ? (
          <div className="empty-state" data-testid="tasks-empty">
            <p className="empty-title">{tasks.length ? 'No tasks match this filter' : 'No tasks yet'}</p>
            <p className="muted">{tasks.length ? '' : 'Submit one with the form; it appears here and updates live.'}</p>
          </div>
        ) : null}
        {shown.length ? (
          <div className="table-wrap">
            <table className="tasks">
              <thead>
                <tr>
                  <th className="col-expand" aria-label="Expand" />
                  <th className="col-task">Task</th>
                  <th className="col-status">Status</th>
                  <th className="col-progress">Progress</th>
                  <th className="col-queue">Queue / devices</th>
                  <th className="col-time">Created</th>
                  <th className="col-time">Started</th>
                  <th className="col-time">Finished</th>
                  <th className="col-actions" aria-label="Actions" />
                </tr>
              </thead>
              <tbody>
                {shown.map((t) => {
                  const open = expanded.has(t.id);
                  const queued = waiting.get(t.id);
                  return (
                    <Fragment key={t.id}>
                      <tr
                        className={`task-row ${open ? 'open' : ''}`}
                        data-testid="task-row"
                        data-task-id={t.id}
                        data-status={t.status}
                        data-name={t.spec.name}
                        onClick={() => toggle(t.id)}
                      >
                        <td className="col-expand">
                          <button
                            type="button"
                            className="chevron"
                            aria-expanded={open}
                            aria-label={`${open ? 'Collapse' : 'Expand'} ${t.spec.name}`}
                            data-testid="expand"
                            onClick={(e) => {
                              e.stopPropagation();
                              toggle(t.id);
                            }}
                          >
                            <svg viewBox="0 0 16 16" width="14" height="14" aria-hidden>
                              <path
                                d="M6 4l4 4-4 4"
                                fill="none"
                                stroke="currentColor"
                                strokeWidth="1.8"
                                strokeLinecap="round"
                                strokeLinejoin="round"
                              />
                            </svg>
                          </button>
                        </td>
                        <td className="col-task">
                          <div className="task-name" data-testid="task-name" title={t.spec.name}>
                            {t.spec.name}
                          </div>
                          <div className="task-sub" title={`${t.spec.model} · ${t.id}`}>
                            {modelShort(t.spec.model)} · <span className="mono">{t.id}</span>
                          </div>
                          <label className="compare-toggle" onClick={(e) => e.stopPropagation()}>
                            <input
                              type="checkbox"
                              checked={compare.includes(t.id)}
                              onChange={() => toggleCompare(t.id)}
                              data-testid="compare-toggle"
                              aria-label={`Compare the loss of ${t.spec.name}`}
                            />
                            {compare.includes(t.id) ? (
                              <i
                                className="swatch"
                                style={{ background: COMPARE_COLORS[compare.indexOf(t.id) % COMPARE_COLORS.length] }}
                                aria-hidden
                              />
                            ) : null}
                            compare
                          </label>
                        </td>
                        <td className="col-status">
                          <StatusBadge status={t.status} stopping={!!t.stop} />
                        </td>
                        <td className="col-progress">
                          <ProgressBar task={t} compact />
                          <SpeedLine task={t} />
                          {t.status === 'QUEUED' && queued?.expectedStart ? (
                            <div className="sub-line" data-testid="expected-start-short" title={EXPECTED_START_NOTE}>
                              starts by {shortTime(queued.expectedStart)}
                            </div>
                          ) : null}
                        </td>
                        <td
                          className="col-queue"
                          data-testid="queue-pos"
                          data-label="Queue / devices"
                          title={requestText(t.spec.resources)}
                        >
                          {t.status === 'QUEUED' && queued ? (
                            <span
                              className="queue-pos"
                              title={`${WAIT_LABEL[queued.reason.code] ?? queued.reason.code}: ${queued.reason.message}`}
                            >
                              #{queued.position}
                            </span>
                          ) : t.devices.length && isActive(t.status) ? (
                            <span className="muted mono" data-testid="task-devices">
                              {devicesText(t.devices)}
                            </span>
                          ) : (
                            <span className="muted">—</span>
                          )}
                        </td>
                        <td title={fullTime(t.createdAt)} className="time col-created" data-label="Created">
                          {shortTime(t.createdAt)}
                        </td>
                        <td title={fullTime(t.startedAt)} className="time col-started" data-label="Started">
                          {shortTime(t.startedAt)}
                          <CostLine task={t} />
                        </td>
                        <td title={fullTime(t.finishedAt)} className="time col-finished" data-label="Finished">
                          {shortTime(t.finishedAt)}
                        </td>
                        <td className="col-actions" onClick={(e) => e.stopPropagation()}>
                          {canCancel(t) ? (
                            <button
                              type="button"
                              className="btn btn-small btn-ghost-danger"
                              data-testid="cancel-btn"
                              aria-label={`Cancel ${t.spec.name}`}
                              onClick={() => setPending({ kind: 'cancel', task: t })}
                            >
                              Cancel
                            </button>
                          ) : null}
                          {t.status === 'COMPLETED' ? (
                            <ServeCell taskId={t.id} taskName={t.spec.name} deployment={deploymentOf(t.id, deployments.data)} />
                          ) : null}
                          {canDelete(t) ? (
                            <button
                              type="button"
                              className="btn btn-small btn-ghost"
                              data-testid="delete-btn"
                              aria-label={`Delete ${t.spec.name}`}
                              onClick={() => setPending({ kind: 'delete', task: t })}
                            >
                              Delete
                            </button>
                          ) : null}
                        </td>
                      </tr>
                      {open ? (
                        <tr className="detail-row">
                          <td colSpan={9}>
                            <TaskDetail task={t} queued={t.status === 'QUEUED' ? (queued ?? null) : null} />
                          </td>
                        </tr>
                      ) : null}
                    </Fragment>
                  );
                })}
              </tbody>
            </table>
            {props.more ? (
              <div className="table-foot muted small" data-testid="tasks-more">
                Showing the newest {TASK_LIST_INPUT.limit} tasks.
              </div>
            ) : null}
          </div>
        ) : null}

        <ConfirmDialog
          open={pending !== null}
          title={pending?.kind === 'cancel' ? `Cancel “${pending.task.spec.name}”?` : `Delete “${pending?.task.spec.name ?? ''}”?`}
          confirmLabel={pending?.kind === 'cancel' ? 'Cancel task' : 'Delete task'}
          cancelLabel={pending?.kind === 'cancel' ? (isActive(pending.task.status) ? 'Keep running' : 'Keep it queued') : 'Keep'}
          danger
          busy={cancel.isPending || del.isPending}
          error={actionError}
          onClose={close}
          onConfirm={() => {
            if (!pending) return;
            if (pending.kind === 'cancel') cancel.mutate({ id: pending.task.id, ...(reason.trim() ? { reason: reason.trim() } : {}) });
            else del.mutate({ id: pending.task.id });
          }}
        >
          {pending?.kind === 'cancel' ? (
            <>
              <p>
                {isActive(pending.task.status)
                  ? 'The trainer is asked to stop (SIGTERM, then killed if it does not exit). Progress so far is not kept as a finished model.'
                  : 'The task leaves the queue and will not run.'}
              </p>
              <label className="dialog-label" htmlFor="cancel-reason">
                Reason <span className="muted">(optional, kept in the task’s history)</span>
              </label>
              <input
                id="cancel-reason"
                data-testid="cancel-reason"
                value={reason}
                onChange={(e) => setReason(e.target.value)}
                placeholder="e.g. wrong dataset"
              />
            </>
          ) : pending ? (
            <p>The task disappears from the list. Its history stays in the event log; its output files are not removed.</p>
          ) : null}
        </ConfirmDialog>
      </Card>
    </>
  );
}

/** A training task's speed and time left, under its progress bar. */
function SpeedLine({ task }: { task: Task }) {
  const speed = taskSpeed(task, Date.now());
  if (!speed) return null;
  return (
    <div className="sub-line" data-testid="speed-line">
      {speedText(speed.stepsPerSecond)}
      {speed.secondsLeft !== null ? ` · ${span(speed.secondsLeft * 1000)} left` : ''}
    </div>
  );
}

/** How long a task has held its devices, and the GPU-hours that makes. */
function CostLine({ task }: { task: Task }) {
  const cost = accounting(task, Date.now());
  if (cost.elapsedMs === null) return null;
  return (
    <div
      className="sub-line"
      data-testid="cost-line"
      title={`${cost.devices} device${cost.devices === 1 ? '' : 's'} × ${span(cost.elapsedMs)}`}
    >
      {span(cost.elapsedMs)} · {gpuHoursText(cost.gpuHours!)}
    </div>
  );
}

type SortKey = keyof typeof SORTS;
const SORTS = {
  newest: 'Newest first',
  oldest: 'Oldest first',
  name: 'Name A–Z',
  status: 'Status',
  progress: 'Most progress',
} as const;
/** Where each status sorts (running first, completed last): a total map, so a new status must be placed. */
const STATUS_RANK: Record<TaskStatus, number> = { TRAINING: 0, PREPARING: 1, QUEUED: 2, PENDING: 3, FAILED: 4, CANCELLED: 5, COMPLETED: 6 };

/** The tasks in the chosen order; ties keep the newest first. */
function sortTasks(tasks: Task[], key: SortKey): Task[] {
  const out = tasks.slice();
  const byNewest = (a: Task, b: Task) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1);
  const cmp: Record<SortKey, (a: Task, b: Task) => number> = {
    newest: byNewest,
    oldest: (a, b) => -byNewest(a, b),
    name: (a, b) => a.spec.name.localeCompare(b.spec.name) || byNewest(a, b),
    status: (a, b) => STATUS_RANK[a.status] - STATUS_RANK[b.status] || byNewest(a, b),
    progress: (a, b) => b.progress.percent - a.progress.percent || byNewest(a, b),
  };
  return out.sort(cmp[key]);
}
