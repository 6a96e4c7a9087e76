// How a task trains: its speed and time left, what it cost (run time, GPU-hours, peak GPU memory),
// its loss with the learning rate, and its throughput, live from its progress reports
// (tasks.metrics); and the comparison of several tasks' loss by step.
import { accounting, isActive, taskSpeed, throughputSeries, type Task } from '../api';
import { gpuHoursText, modelShort, span, speedText } from '../format';
import { seriesOf, useSeries, type Series } from '../metrics';
import { Chart, compact, type ChartSeries } from './Chart';
import { Card } from './ui';

const LOSS = '#4f46e5';
const LR = '#b54708';
const SPEED = '#039855';
/** Colours of compared tasks, in the order they were picked. */
export const COMPARE_COLORS = ['#4f46e5', '#d92d20', '#039855', '#b54708', '#0086c9', '#7a5af8', '#c11574', '#344054'];

/** The figures of one task: speed and time left while it trains; run time, GPU-hours and peak memory. */
function TrainingStats({ task, series, now = Date.now() }: { task: Task; series?: Series; now?: number }) {
  const speed = taskSpeed(task, now, series?.points);
  const cost = accounting(task, now);
  const items: [string, string, string][] = [];
  if (speed) {
    items.push(['speed', 'Speed', `${speedText(speed.stepsPerSecond)}${speed.basis === 'average' ? ' (average)' : ''}`]);
    if (speed.secondsLeft !== null) items.push(['time-left', 'Time left', `≈ ${span(speed.secondsLeft * 1000)}`]);
  }
  if (cost.elapsedMs !== null) {
    items.push(['elapsed', task.finishedAt ? 'Ran for' : 'Running for', span(cost.elapsedMs)]);
    items.push(['gpu-hours', 'GPU-hours', `${gpuHoursText(cost.gpuHours!)} (${cost.devices} device${cost.devices === 1 ? '' : 's'})`]);
  }
  if (series?.peakMemoryGb != null) items.push(['peak-memory', 'Peak GPU memory', `${series.peakMemoryGb} GB`]);
  if (!items.length) return null;
  return (
    <dl className="stats" data-testid="training-stats">
      {items.map(([key, label, value]) => (
        <div key={key} data-testid={`stat-${key}`}>
          <dt>{label}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

/** Loss and learning rate by step, and steps per second over time, as the reports arrive. */
export function TrainingCharts({ task }: { task: Task }) {
  const all = useSeries([{ id: task.id, version: task.version }]);
  const series = seriesOf(all, task.id);
  const stepped = series.points.filter((p) => p.step !== null);
  const loss: ChartSeries = {
    label: 'loss',
    color: LOSS,
    points: stepped.flatMap((p) => (p.loss === null ? [] : [[p.step!, p.loss] as const])),
  };
  const lr: ChartSeries = {
    label: 'learning rate',
    color: LR,
    right: true,
    points: stepped.flatMap((p) => (p.learningRate === null ? [] : [[p.step!, p.learningRate] as const])),
  };
  const samplesPerStep = task.spec.config.batchSize * task.spec.config.gradientAccumulation;
  const speed = throughputSeries(series.points);
  const first = loss.points[0];
  const last = loss.points[loss.points.length - 1];
  return (
    <section className="panel training" data-testid="training" aria-label="Training">
      <div className="panel-head">
        <h3>Training</h3>
        <span className="muted small" data-testid="training-state">
          {series.error
            ? `could not load the progress reports: ${series.error}`
            : `${series.points.length} progress report${series.points.length === 1 ? '' : 's'}${task.status === 'TRAINING' ? ' · live' : ''}`}
        </span>
      </div>
      <TrainingStats task={task} series={series} />
      {loss.points.length ? (
        <div className="charts">
          <Chart
            testId="loss-chart"
            series={lr.points.length ? [loss, lr] : [loss]}
            x={{ label: 'step' }}
            left="loss"
            {...(lr.points.length ? { right: 'learning rate' } : {})}
            summary={`Loss by step: ${first![1]} at step ${first![0]}, ${last![1]} at step ${last![0]}${lr.points.length ? '; learning rate on the right axis' : ''}.`}
          />
          {speed.length > 1 ? (
            <Chart
              testId="throughput-chart"
              series={[{ label: 'steps/s', color: SPEED, points: speed.map((s) => [s.at, s.stepsPerSecond] as const) }]}
              x={{ label: 'time', time: true }}
              left="steps/s"
              height={150}
              summary={`Throughput over time: ${compact(speed[speed.length - 1]!.stepsPerSecond)} steps per second at the last report, ${samplesPerStep} samples a step.`}
              caption={`${samplesPerStep} samples a step (batch ${task.spec.config.batchSize} × accumulation ${task.spec.config.gradientAccumulation})`}
            />
          ) : null}
        </div>
      ) : (
        <p className="muted small chart-empty" data-testid="training-empty">
          {series.loaded || series.error
            ? isActive(task.status)
              ? 'The chart starts with the first progress report that has a loss.'
              : 'This task recorded no loss.'
            : 'Loading the progress reports…'}
        </p>
      )}
    </section>
  );
}

/** Several tasks' loss by step on one chart. */
export function CompareCard({ tasks, onRemove, onClear }: { tasks: Task[]; onRemove: (id: string) => void; onClear: () => void }) {
  const all = useSeries(tasks.map((t) => ({ id: t.id, version: t.version })));
  const series: ChartSeries[] = tasks.map((t, i) => ({
    label: `${t.spec.name} (${t.id.slice(-6)})`,
    color: COMPARE_COLORS[i % COMPARE_COLORS.length]!,
    points: seriesOf(all, t.id).points.flatMap((p) => (p.step === null || p.loss === null ? [] : [[p.step, p.loss] as const])),
  }));
  const withPoints = series.filter((s) => s.points.length);
  return (
    <Card
      title="Compare loss"
      testId="compare-card"
      aside={
        <button type="button" className="btn btn-small btn-ghost" onClick={onClear} data-testid="compare-clear">
          Clear
        </button>
      }
    >
      <ul className="compare-list">
        {tasks.map((t, i) => (
          <li key={t.id} data-testid="compare-item" data-task-id={t.id}>
            <i className="swatch" style={{ background: COMPARE_COLORS[i % COMPARE_COLORS.length] }} aria-hidden />
            <span className="compare-name" title={`${t.spec.name} · ${t.spec.model}`}>
              {t.spec.name}
            </span>
            <span className="muted small">{modelShort(t.spec.model)}</span>
            <button
              type="button"
              className="btn-icon"
              aria-label={`Remove ${t.spec.name} from the comparison`}
              onClick={() => onRemove(t.id)}
            >
              ×
            </button>
          </li>
        ))}
      </ul>
      {withPoints.length ? (
        <Chart
          testId="compare-chart"
          series={series}
          x={{ label: 'step' }}
          left="loss"
          height={240}
          summary={`Loss by step of ${tasks.length} tasks: ${series
            .map((s) => (s.points.length ? `${s.label} ends at ${s.points[s.points.length - 1]![1]}` : `${s.label} has no loss yet`))
            .join('; ')}.`}
        />
      ) : (
        <p className="muted small" data-testid="compare-empty">
          None of these tasks has reported a loss yet.
        </p>
      )}
    </Card>
  );
}
