// Small shared pieces: status badge, progress bar, form field with its error.
import { Children, cloneElement, isValidElement, type ReactElement, type ReactNode } from 'react';
import { isTerminal, isWaiting, type Task, type TaskStatus } from '../api';
import { STATUS_LABEL } from '../format';

export function StatusBadge({ status, stopping }: { status: TaskStatus; stopping?: boolean }) {
  const label = stopping && !isTerminal(status) ? 'Stopping' : STATUS_LABEL[status];
  return (
    <span
      className={`badge badge-${stopping && label === 'Stopping' ? 'stopping' : status.toLowerCase()}`}
      data-testid="status-badge"
      data-status={status}
    >
      <span className="badge-dot" aria-hidden />
      {label}
    </span>
  );
}

export function ProgressBar({ task, compact }: { task: Task; compact?: boolean }) {
  const p = task.progress;
  const pct = Math.max(0, Math.min(100, p.percent));
  const tone = task.status === 'FAILED' ? 'bad' : task.status === 'CANCELLED' ? 'muted' : task.status === 'COMPLETED' ? 'good' : 'live';
  const parts: string[] = [];
  if (p.epoch != null && !(compact && (p.totalEpochs ?? 0) <= 1)) parts.push(`epoch ${p.epoch}${p.totalEpochs ? `/${p.totalEpochs}` : ''}`);
  if (p.step != null) parts.push(`step ${p.step}${p.totalSteps ? `/${p.totalSteps}` : ''}`);
  if (p.loss != null) parts.push(`loss ${p.loss.toFixed(4)}`);
  return (
    <div className={`progress ${compact ? 'progress-compact' : ''}`} data-testid="progress" data-percent={pct}>
      <div className="progress-head">
        <span className="progress-pct">{pct.toFixed(pct % 1 ? 1 : 0)}%</span>
        <span className="progress-detail" data-testid="progress-detail" title={parts.join(' · ')}>
          {parts.length ? parts.join(' · ') : isWaiting(task.status) ? 'waiting' : ''}
        </span>
      </div>
      <div
        className="progress-track"
        role="progressbar"
        aria-label={`Progress of ${task.spec.name}`}
        aria-valuetext={`${pct}%${parts.length ? `, ${parts.join(', ')}` : ''}`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={pct}
      >
        <div className={`progress-fill progress-${tone}`} style={{ width: `${pct}%` }} />
      </div>
    </div>
  );
}

export function Field(props: {
  label: string;
  htmlFor: string;
  errors?: string[] | undefined;
  errorKey: string;
  hint?: ReactNode;
  children: ReactNode;
  className?: string;
}) {
  const { label, htmlFor, errors, errorKey, hint, children, className } = props;
  const invalid = !!errors?.length;
  // The control the label names says whether it is in error, and what describes it.
  const described = invalid ? `${htmlFor}-error` : hint ? `${htmlFor}-hint` : undefined;
  const controls = Children.map(children, (child) =>
    isValidElement<{ id?: string }>(child) && child.props.id === htmlFor
      ? cloneElement(child as ReactElement<Record<string, unknown>>, { 'aria-invalid': invalid, 'aria-describedby': described })
      : child,
  );
  return (
    <div className={`field ${invalid ? 'field-invalid' : ''} ${className ?? ''}`}>
      <label htmlFor={htmlFor}>{label}</label>
      {controls}
      {errors?.length ? (
        <div className="field-error" role="alert" data-testid={`field-error-${errorKey}`} id={`${htmlFor}-error`}>
          {errors.join(' ')}
        </div>
      ) : hint ? (
        <div className="field-hint" id={`${htmlFor}-hint`}>
          {hint}
        </div>
      ) : null}
    </div>
  );
}

export function Card(props: { title: ReactNode; aside?: ReactNode; children: ReactNode; testId?: string; className?: string }) {
  return (
    <section className={`card ${props.className ?? ''}`} data-testid={props.testId}>
      <header className="card-head">
        <h2>{props.title}</h2>
        {props.aside ? <div className="card-aside">{props.aside}</div> : null}
      </header>
      <div className="card-body">{props.children}</div>
    </section>
  );
}
