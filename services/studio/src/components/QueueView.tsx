// The queue: each GPU slot and the task holding it (or why it is blocked), then the waiting
// tasks in the order they will start, and the server's too-many-queued warning.
import type { QueueView as Queue } from '../api';
import { duration, modelShort } from '../format';
import { Card, ProgressBar, StatusBadge } from './ui';

export function QueueView({ queue, error }: { queue: Queue | undefined; error: string | null }) {
  return (
    <Card
      title="Queue"
      testId="queue-view"
      aside={
        queue ? (
          <span className="muted small" data-testid="queue-count">
            {queue.queuedCount} waiting
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
              <h4 className="section-title">Running</h4>
              <div className="slots">
                {queue.slots.map((s) => (
                  <Slot key={s.slotId} slot={s} />
                ))}
              </div>
            </div>
            <div>
              <h4 className="section-title">Waiting{queue.queuedCount ? ` · ${queue.queuedCount}` : ''}</h4>
              {queue.queued.length ? (
                <ol className="queue-list" data-testid="queue-list">
                  {queue.queued.map((q) => (
                    <li key={q.task.id} className="queue-item" data-testid="queue-item" data-task-id={q.task.id}>
                      <span className="queue-pos">#{q.position}</span>
                      <span className="queue-main">
                        <span className="task-name">{q.task.spec.name}</span>
                        <span className="muted small">{modelShort(q.task.spec.model)}</span>
                      </span>
                      <span className="muted small" title={q.task.queuedAt ?? ''}>
                        waiting {duration(q.task.queuedAt, null)}
                      </span>
                    </li>
                  ))}
                  {queue.queuedCount > queue.queued.length ? (
                    <li className="queue-item muted small" data-testid="queue-more">
                      … and {queue.queuedCount - queue.queued.length} more (<code>trainyard list --status QUEUED</code> lists them all)
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

function Slot({ slot: s }: { slot: Queue['slots'][number] }) {
  return (
    <div
      className={`slot ${s.task ? 'slot-busy' : s.blockedReason ? 'slot-blocked' : 'slot-idle'}`}
      data-testid="queue-slot"
      data-task-id={s.task?.id ?? ''}
    >
      <div className="slot-head">
        <span className="slot-title">GPU {s.gpuIndex}</span>
        <span className="muted small">slot {s.slotId}</span>
      </div>
      {s.task ? (
        <div className="slot-task">
          <div className="slot-task-head">
            <span className="task-name" data-testid="slot-task-name">
              {s.task.spec.name}
            </span>
            <StatusBadge status={s.task.status} stopping={!!s.task.stop} />
          </div>
          <ProgressBar task={s.task} compact />
          <div className="muted small">
            {modelShort(s.task.spec.model)} · running {duration(s.task.startedAt, null)}
          </div>
        </div>
      ) : (
        <div className="slot-empty">{s.blockedReason ? 'Blocked by other programs' : 'Idle — the next queued task starts here'}</div>
      )}
      {s.blockedReason ? (
        <div className="slot-blocked-reason" data-testid="slot-blocked">
          {s.blockedReason}
        </div>
      ) : null}
    </div>
  );
}
