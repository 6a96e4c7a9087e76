// The GPU card: each device's memory (ours and other programs'), a GPU in MIG mode with its
// instances under it, the processes that are not ours, and the model recommendation;
// "Detecting GPU…" until the first probe answers.
import { useQuery } from '@tanstack/react-query';
import { useTRPC, type GpuDevice, type GpuInfo } from '../api';
import { gb, shortTime } from '../format';
import { Chart } from './Chart';
import { Card } from './ui';

export function GpuCard({ gpu, error }: { gpu: GpuInfo | undefined; error: string | null }) {
  return (
    <Card
      title="GPU"
      testId="gpu-card"
      aside={
        gpu ? (
          <span className="muted small" title={gpu.probedAt}>
            checked {shortTime(gpu.probedAt)}
          </span>
        ) : null
      }
    >
      {!gpu ? (
        error ? (
          <div className="empty-state" data-testid="gpu-unreachable">
            <p className="empty-title">GPU status unavailable</p>
            <p className="muted">{error}</p>
          </div>
        ) : (
          <div className="detecting" data-testid="gpu-detecting">
            <span className="spinner" aria-hidden />
            Detecting GPU…
          </div>
        )
      ) : !gpu.available ? (
        <div className="gpu-none" data-testid="gpu-none">
          <div className="gpu-none-head">
            <ChipIcon />
            <div>
              <p className="empty-title">No GPU detected</p>
              <p className="muted small">Tasks still queue; GPU trainers need one to run.</p>
            </div>
          </div>
          <p className="recommendation recommendation-warn" data-testid="gpu-recommendation">
            {gpu.recommendation}
          </p>
          {gpu.error ? (
            <details className="tech-detail">
              <summary>Technical detail</summary>
              <code>{gpu.error}</code>
            </details>
          ) : null}
        </div>
      ) : (
        <>
          <ul className="gpu-list">
            {gpu.devices.map((d) => (
              <Device key={d.uuid} d={d} />
            ))}
          </ul>
          <GpuHistory />
          <p className="recommendation" data-testid="gpu-recommendation">
            <span className="recommendation-label">Recommendation</span>
            {gpu.recommendation}
          </p>
          <HeldNote devices={gpu.devices} />
          {gpu.error ? <p className="muted small">Note: {gpu.error}</p> : null}
        </>
      )}
    </Card>
  );
}

function Device({ d }: { d: GpuDevice }) {
  const total = d.memoryGb || 1;
  const external = Math.min(d.externalMemoryGb, d.memoryUsedGb);
  const ours = Math.max(0, d.memoryUsedGb - external);
  const externalProcs = d.processes.filter((p) => !p.ours);
  const ourProcs = d.processes.filter((p) => p.ours);
  return (
    <li className="gpu-device" data-testid="gpu-device">
      <div className="gpu-device-head">
        <span className="gpu-index">GPU {d.id}</span>
        <span className="gpu-name">{d.name}</span>
        <span className="gpu-util" title="GPU utilization">
          {d.utilization == null ? 'util n/a' : `${d.utilization}% util`}
        </span>
      </div>
      <div className="mem-track" title={`${d.memoryUsedGb} of ${d.memoryGb} GB used`}>
        <div className="mem-external" style={{ width: `${(external / total) * 100}%` }} />
        <div className="mem-ours" style={{ width: `${(ours / total) * 100}%` }} />
      </div>
      <div className="mem-legend">
        <span data-testid="gpu-memory">
          <strong>{gb(d.memoryUsedGb)}</strong> of {gb(d.memoryGb)} used
        </span>
        <span className="muted">{gb(Math.max(0, d.memoryGb - d.memoryUsedGb))} free</span>
      </div>
      {external > 0 || ours > 0 ? (
        <div className="legend">
          {external > 0 ? (
            <span>
              <i className="dot dot-external" /> other programs {gb(external)}
            </span>
          ) : null}
          {ours > 0 ? (
            <span>
              <i className="dot dot-ours" /> Trainyard &amp; system {gb(ours)}
            </span>
          ) : null}
        </div>
      ) : null}
      {d.migMode ? (
        <ul className="gpu-instances" data-testid="gpu-instances">
          {d.instances.length ? (
            d.instances.map((i) => <Instance key={i.uuid} gpu={d.id} i={i} />)
          ) : (
            <li className="muted small">MIG mode, but its instances could not be read.</li>
          )}
        </ul>
      ) : null}
      {externalProcs.length ? (
        <div className="procs" data-testid="gpu-external">
          <div className="procs-title">Other programs on this GPU</div>
          <ul>
            {externalProcs.map((p) => (
              <li key={p.pid}>
                <code className="proc-name" title={p.name}>
                  {p.name.split('/').pop()}
                </code>
                <span className="muted">pid {p.pid}</span>
                <span className="proc-mem">{gb(p.memoryUsedGb)}</span>
              </li>
            ))}
          </ul>
        </div>
      ) : (
        <div className="muted small">No other programs are using this GPU.</div>
      )}
      {ourProcs.length ? <div className="muted small">{ourProcs.length} Trainyard trainer(s) running here.</div> : null}
    </li>
  );
}

/** One MIG instance: a device of its own, with its memory. */
function Instance({ gpu, i }: { gpu: number; i: GpuDevice['instances'][number] }) {
  const total = i.memoryGb || 1;
  const external = Math.min(i.externalMemoryGb, i.memoryUsedGb);
  const ours = Math.max(0, i.memoryUsedGb - external);
  return (
    <li className="gpu-instance" data-testid="gpu-instance" data-device-id={`gpu${gpu}/mig${i.id}`} data-profile={i.profile} title={i.uuid}>
      <div className="gpu-device-head">
        <span className="gpu-index" title={`gpu${gpu}/mig${i.id}`}>
          MIG {i.id}
        </span>
        <span className="gpu-name">{i.profile}</span>
        <span className="muted small">
          {gb(i.memoryUsedGb)} of {gb(i.memoryGb)}
        </span>
      </div>
      <div className="mem-track">
        <div className="mem-external" style={{ width: `${(external / total) * 100}%` }} />
        <div className="mem-ours" style={{ width: `${(ours / total) * 100}%` }} />
      </div>
    </li>
  );
}

function ChipIcon() {
  return (
    <svg className="chip-icon" viewBox="0 0 24 24" width="28" height="28" aria-hidden>
      <rect x="6" y="6" width="12" height="12" rx="2" fill="none" stroke="currentColor" strokeWidth="1.6" />
      <path d="M9 3v3M15 3v3M9 18v3M15 18v3M3 9h3M3 15h3M18 9h3M18 15h3" stroke="currentColor" strokeWidth="1.6" />
      <path d="M5 19L19 5" stroke="currentColor" strokeWidth="1.6" />
    </svg>
  );
}

/** Each GPU's memory in use and utilisation over the last hour (system.gpuHistory, as the probes saw them). */
function GpuHistory() {
  const trpc = useTRPC();
  const history = useQuery(trpc.system.gpuHistory.queryOptions(undefined, { refetchInterval: 10_000 }));
  const devices = history.data?.devices.filter((d) => d.samples.length > 1) ?? [];
  if (!devices.length) return null;
  return (
    <details className="gpu-history" data-testid="gpu-history" open>
      <summary>Last hour</summary>
      {devices.map((d) => {
        const last = d.samples[d.samples.length - 1]!;
        const util = d.samples.filter((x) => x.utilization !== null);
        const minutes = Math.max(1, Math.round((last.at - d.samples[0]!.at) / 60_000));
        return (
          <Chart
            key={d.uuid}
            testId="gpu-history-chart"
            series={[
              { label: 'memory GB', color: '#4f46e5', points: d.samples.map((x) => [x.at, x.memoryUsedGb] as const) },
              ...(util.length
                ? [{ label: 'util %', color: '#039855', right: true, points: util.map((x) => [x.at, x.utilization!] as const) }]
                : []),
            ]}
            x={{ label: `GPU ${d.index}`, time: true }}
            left="GB"
            {...(util.length ? { right: '%' } : {})}
            height={130}
            leftRange={[0, d.memoryGb]}
            rightRange={[0, 100]}
            summary={`GPU ${d.index} (${d.name}) over the last ${minutes} min: ${gb(last.memoryUsedGb)} of ${gb(d.memoryGb)} in use now${last.utilization !== null ? `, ${last.utilization}% utilisation` : ''}.`}
          />
        );
      })}
    </details>
  );
}

/** The recommendation above is for the GPU's whole memory; the form recommends by what other programs leave. */
function HeldNote({ devices }: { devices: GpuDevice[] }) {
  const held = devices.filter((d) => d.externalMemoryGb > 0);
  if (!held.length) return null;
  const d = held.reduce((a, b) => (b.externalMemoryGb > a.externalMemoryGb ? b : a));
  return (
    <p className="muted small" data-testid="gpu-held-note">
      Other programs hold {gb(d.externalMemoryGb)} of GPU {d.id}: the new-task form recommends and estimates by the{' '}
      {gb(Math.max(0, Math.round((d.memoryGb - d.externalMemoryGb) * 10) / 10))} left.
    </p>
  );
}
