// The queue: the devices grouped under their GPU (a GPU in MIG mode holds its instances), each
// with a memory bar of what its tasks hold and what other programs hold, then the waiting tasks
// in order with why each waits (a badge for the reason's code), the head's reservation, and the
// server's too-many-queued warning. Other users' tasks, which the server hides from a user who is
// not an admin, appear as the memory and the places they take.
import type { QueueDevice, QueueView as Queue, QueuedEntry } from '../api';
import { duration, gb, modelShort, requestText, shortTime, WAIT_LABEL } from '../format';
import { Card, ProgressBar, StatusBadge } from './ui';

export function QueueView({ queue, error }: { queue: Queue | undefined; error: string | null }) {
  return (
    <Card
      title="Queue"
      testId="queue-view"
      aside={
        queue ? (
          <span className="muted small" data-testid="queue-count">
            {queue.queuedCount} waiting · {queue.policy} policy
          </span>
        ) : null
      }
    >
      {!queue ? (
        <div className="detecting">{error ?? 'Loading the queue…'}</div>
      ) : (
        <>
          {queue.warning ? (
            <div className="alert alert-warn" data-testid="queue-warning" role="status">
              {queue.warning}
            </div>
          ) : null}
          <div className="queue-grid">
            <div>
              <h4 className="section-title">Devices</h4>
              <div className="slots">
                {byGpu(queue.devices).map((g) => (
                  <GpuGroup key={g.gpuIndex} devices={g.devices} hidden={queue.hidden?.holders ?? []} />
                ))}
              </div>
            </div>
            <div>
              <h4 className="section-title">Waiting{queue.queuedCount ? ` · ${queue.queuedCount}` : ''}</h4>
              {queue.queued.length || queue.hidden?.queuedPositions.length ? (
                <ol className="queue-list" data-testid="queue-list">
                  {waitingList(queue).map((w) =>
                    w.q ? (
                      <Waiting
                        key={w.q.task.id}
                        q={w.q}
                        reservation={queue.reservation?.taskId === w.q.task.id ? queue.reservation : null}
                      />
                    ) : (
                      <li key={`hidden-${w.position}`} className="queue-item" data-testid="queue-item-hidden">
                        <span className="queue-pos">#{w.position}</span>
                        <span className="queue-body">
                          <span className="muted">Another user’s task</span>
                          {w.reservation ? <Reservation r={w.reservation} /> : null}
                        </span>
                        <span />
                      </li>
                    ),
                  )}
                  {queue.queuedCount > queue.queued.length ? (
                    <li className="queue-item muted small" data-testid="queue-more">
                      … and {queue.queuedCount - queue.queued.length} more (<code>trainyard ls --status QUEUED</code> lists them all)
                    </li>
                  ) : null}
                </ol>
              ) : (
                <div className="muted small queue-empty" data-testid="queue-empty">
                  Nothing is waiting.
                </div>
              )}
            </div>
          </div>
        </>
      )}
    </Card>
  );
}

type Reserved = Pick<NonNullable<Queue['reservation']>, 'startAt' | 'deviceIds'>;

/** The caller's queued tasks and the places other users' tasks take, in queue order. */
function waitingList(queue: Queue): { position: number; q: QueuedEntry | null; reservation: Reserved | null }[] {
  const hidden = queue.hidden;
  const others = (hidden?.queuedPositions ?? []).map((position, i) => ({
    position,
    q: null,
    // The head's reservation, when the head is another user's task.
    reservation: i === 0 ? (hidden?.reservation ?? null) : null,
  }));
  const mine = queue.queued.map((q) => ({ position: q.position, q, reservation: null }));
  return [...mine, ...others].sort((a, b) => a.position - b.position);
}

function Reservation({ r }: { r: Reserved }) {
  return (
    <span className="muted small" data-testid="queue-reservation">
      Reserved {r.deviceIds.join(', ')}: starts by {shortTime(r.startAt)} at the latest.
    </span>
  );
}

/** Devices grouped by their GPU, in the server's order. */
function byGpu(devices: readonly QueueDevice[]): { gpuIndex: number; devices: QueueDevice[] }[] {
  const groups = new Map<number, QueueDevice[]>();
  for (const d of devices) groups.set(d.gpuIndex, [...(groups.get(d.gpuIndex) ?? []), d]);
  return [...groups].map(([gpuIndex, ds]) => ({ gpuIndex, devices: ds }));
}

type HiddenHolder = NonNullable<Queue['hidden']>['holders'][number];

function GpuGroup({ devices, hidden }: { devices: QueueDevice[]; hidden: readonly HiddenHolder[] }) {
  const first = devices[0]!;
  const othersOn = (d: QueueDevice) => hidden.filter((h) => h.deviceId === d.id);
  if (!first.migProfile) return <DeviceCard d={first} others={othersOn(first)} title={`GPU ${first.gpuIndex}`} />;
  // A GPU in MIG mode: not a device itself; its instances are.
  const gpuName = first.name.replace(/ MIG \S+$/, '');
  return (
    <div className="gpu-group" data-testid="queue-gpu" data-gpu-index={first.gpuIndex}>
      <div className="slot-head">
        <span className="slot-title">GPU {first.gpuIndex}</span>
        <span className="muted small">
          {gpuName} · MIG mode, {devices.length} instance{devices.length === 1 ? '' : 's'}
        </span>
      </div>
      <div className="gpu-group-instances">
        {devices.map((d) => (
          <DeviceCard key={d.id} d={d} others={othersOn(d)} title={`MIG ${d.migProfile}`} />
        ))}
      </div>
    </div>
  );
}

/** Segment colours for a device's holders, in turn. */
const HOLDER_TONES = 4;

/** A task holding a device: one of the caller's (with its record), or another user's (memory only). */
interface Holding {
  key: string;
  label: string;
  memoryGb: number;
  exclusive: boolean;
  endsBy: string | null;
  task: QueueDevice['holders'][number]['task'];
}

/** A task by its name; a deployment by what it serves (its id is a dep- one). */
function holderLabel(h: QueueDevice['holders'][number]): string {
  if (h.task) return h.task.spec.name;
  if (h.deployment) return `deployment: ${h.deployment.serves.join(', ')}`;
  return h.taskId;
}

function DeviceCard({ d, others, title }: { d: QueueDevice; others: readonly HiddenHolder[]; title: string }) {
  const holders: Holding[] = [
    ...d.holders.map((h) => ({ ...h, key: h.taskId, label: holderLabel(h) })),
    ...others.map((h, i) => ({ ...h, key: `other-${i}`, label: `another user’s ${h.kind}`, task: null })),
  ];
  const busy = holders.length > 0;
  const state = !d.present ? 'absent' : d.blockedReason ? 'blocked' : busy ? 'busy' : 'idle';
  const known = d.memoryGb > 0;
  const total = known ? d.memoryGb : 1;
  const external = known ? Math.min(d.externalMemoryGb, d.memoryGb) : 0;
  // An exclusive task has the whole device (all that other programs leave); a shared one its share.
  const width = (h: Holding) =>
    known ? (h.exclusive ? Math.max(0, d.memoryGb - external) : Math.min(h.memoryGb, d.memoryGb)) / total : 1 / holders.length;
  const held = holders.reduce((n, h) => n + (h.exclusive ? Math.max(0, d.memoryGb - external) : h.memoryGb), 0);
  const free = Math.max(0, d.memoryGb - external - held);
  return (
    <div
      className={`slot ${state === 'busy' ? 'slot-busy' : state === 'idle' ? 'slot-idle' : 'slot-blocked'}`}
      data-testid="queue-device"
      data-device-id={d.id}
      data-state={state}
    >
      <div className="slot-head">
        <span className="slot-title">{title}</span>
        <span className="muted small" title={d.uuid ?? undefined}>
          {d.id} · {d.migProfile ? '' : `${d.name} · `}
          {known ? gb(d.memoryGb) : 'memory unknown'}
        </span>
      </div>
      <div
        className="mem-track"
        role="img"
        data-testid="device-memory"
        aria-label={`${d.id}: ${holders.length} task(s), other programs ${gb(d.externalMemoryGb)}${known ? `, ${gb(free)} free` : ''}`}
      >
        {external > 0 ? (
          <div
            className="mem-external"
            style={{ width: `${(external / total) * 100}%` }}
            title={`Other programs: ${gb(d.externalMemoryGb)}`}
          />
        ) : null}
        {holders.map((h, i) => (
          <div
            key={h.key}
            className={`mem-holder mem-holder-${i % HOLDER_TONES}`}
            style={{ width: `${width(h) * 100}%` }}
            title={`${h.label}: ${h.exclusive ? 'whole device' : `${gb(h.memoryGb)} shared`}`}
          />
        ))}
      </div>
      <div className="legend">
        {external > 0 ? (
          <span data-testid="device-external">
            <i className="dot dot-external" /> other programs {gb(d.externalMemoryGb)}
          </span>
        ) : null}
        {holders.map((h, i) => (
          <span key={h.key}>
            <i className={`dot mem-holder-${i % HOLDER_TONES}`} /> {h.label}{' '}
            {h.exclusive ? (known ? `${gb(d.memoryGb - external)} (whole)` : 'whole device') : `${gb(h.memoryGb)} shared`}
          </span>
        ))}
        {known && busy && holders.every((h) => !h.exclusive) ? <span className="muted">{gb(free)} free</span> : null}
      </div>
      {holders.map((h) =>
        h.task ? (
          <div className="slot-task" key={h.key} data-testid="queue-holder" data-task-id={h.task.id} data-exclusive={h.exclusive}>
            <div className="slot-task-head">
              <span className="task-name" data-testid="holder-task-name">
                {h.task.spec.name}
              </span>
              <StatusBadge status={h.task.status} stopping={!!h.task.stop} />
            </div>
            <ProgressBar task={h.task} compact />
            <div className="muted small">
              {modelShort(h.task.spec.model)} · {h.exclusive ? 'whole device' : `${gb(h.memoryGb)} shared`} · running{' '}
              {duration(h.task.startedAt, null)}
              {h.endsBy ? ` · done by ${shortTime(h.endsBy)}` : ''}
            </div>
          </div>
        ) : null,
      )}
      {!busy ? (
        <div className="slot-empty">
          {!d.present ? 'Gone from the inventory' : d.blockedReason ? 'Blocked by other programs' : 'Free — a queued task can start here'}
        </div>
      ) : null}
      {d.blockedReason ? (
        <div className="slot-blocked-reason" data-testid="device-blocked">
          {d.blockedReason}
        </div>
      ) : null}
    </div>
  );
}

function Waiting({ q, reservation }: { q: QueuedEntry; reservation: Queue['reservation'] }) {
  return (
    <li className="queue-item" data-testid="queue-item" data-task-id={q.task.id} data-reason={q.reason.code}>
      <span className="queue-pos">#{q.position}</span>
      <span className="queue-body">
        <span className="queue-main">
          <span className="task-name">{q.task.spec.name}</span>
          <span className="muted small">
            {modelShort(q.task.spec.model)} · {requestText(q.task.spec.resources)}
          </span>
        </span>
        <span className="queue-reason">
          <span className={`reason-badge reason-${q.reason.code.toLowerCase()}`} data-testid="queue-reason-code" title={q.reason.code}>
            {WAIT_LABEL[q.reason.code] ?? q.reason.code}
          </span>
          <span className="small" data-testid="queue-reason">
            {q.reason.message}
          </span>
        </span>
        {reservation ? <Reservation r={reservation} /> : null}
      </span>
      <span className="muted small" title={q.task.queuedAt ?? ''}>
        waiting {duration(q.task.queuedAt, null)}
      </span>
    </li>
  );
}
