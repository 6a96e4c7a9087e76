// A line chart over uPlot (a small canvas chart library): several series on a shared x axis,
// each on the left axis or on a right one of its own (e.g. loss left, learning rate right).
// Series may have their points at different x (tasks compared by step): they are aligned on the
// union of their x values and drawn across the gaps. The canvas is described for screen readers by
// `summary`, and uPlot's legend shows the values under the cursor.
import { useEffect, useMemo, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  label: string;
  color: string;
  points: readonly (readonly [number, number])[];
  /** Drawn dashed, on the right axis. */
  right?: boolean;
}

export interface ChartProps {
  series: readonly ChartSeries[];
  /** 'time': x is epoch ms (shown as clock times); otherwise a plain number (e.g. the step). */
  x: { label: string; time?: boolean };
  left: string;
  right?: string;
  height?: number;
  /** What the chart shows, in words (the canvas itself says nothing to a screen reader). */
  summary: string;
  testId: string;
  /** A format for the values on the axes and in the legend. */
  format?: (v: number) => string;
  formatRight?: (v: number) => string;
  /** A line under the chart. */
  caption?: string;
  /** Fixed ranges of the axes (e.g. 0–100 for a percentage); otherwise they follow the data. */
  leftRange?: [number, number];
  rightRange?: [number, number];
}

/** The series aligned on the union of their x values (uPlot's AlignedData), nulls where one has no point. */
function alignSeries(series: readonly ChartSeries[], time: boolean): uPlot.AlignedData {
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = series.map((s) => {
    const col: (number | null)[] = new Array<number | null>(xs.length).fill(null);
    for (const [x, y] of s.points) col[index.get(x)!] = y;
    return col;
  });
  return [time ? xs.map((x) => x / 1000) : xs, ...columns];
}

export function Chart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const height = props.height ?? 200;
  const time = props.x.time === true;
  const data = useMemo(() => alignSeries(props.series, time), [props.series, time]);
  // A new chart when the set of series changes; new data otherwise.
  const shape = JSON.stringify([
    props.series.map((s) => [s.label, s.color, s.right ?? false]),
    props.x,
    props.left,
    props.right,
    height,
    props.leftRange,
    props.rightRange,
  ]);
  const fmt = useRef({ left: props.format, right: props.formatRight });
  fmt.current = { left: props.format, right: props.formatRight };

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const value = (side: 'left' | 'right') => (_u: uPlot, v: number | null) =>
      v === null || v === undefined ? '—' : (fmt.current[side] ?? compact)(v);
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      scales: {
        x: { time },
        y: props.leftRange ? { auto: false, range: props.leftRange } : { auto: true },
        ...(props.right ? { r: props.rightRange ? { auto: false, range: props.rightRange } : { auto: true } } : {}),
      },
      axes: [
        { label: props.x.label, stroke: '#475467', grid: { stroke: '#eaecf0' }, ticks: { stroke: '#eaecf0' } },
        {
          label: props.left,
          scale: 'y',
          stroke: '#475467',
          grid: { stroke: '#eaecf0' },
          ticks: { stroke: '#eaecf0' },
          size: 56,
          values: (_u, vs) => vs.map((v) => (fmt.current.left ?? compact)(v)),
        },
        ...(props.right
          ? [
              {
                label: props.right,
                scale: 'r',
                side: 1,
                stroke: '#475467',
                grid: { show: false },
                size: 64,
                values: (_u: uPlot, vs: number[]) => vs.map((v) => (fmt.current.right ?? compact)(v)),
              },
            ]
          : []),
      ],
      series: [
        { label: props.x.label, ...(time ? {} : { value: (_u: uPlot, v: number | null) => (v === null ? '—' : String(v)) }) },
        ...props.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: s.right ? 1.5 : 2,
          scale: s.right ? 'r' : 'y',
          spanGaps: true,
          points: { show: false },
          value: value(s.right ? 'right' : 'left'),
          ...(s.right ? { dash: [6, 4] } : {}),
        })),
      ],
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false } },
    };
    const u = new uPlot(opts, data, el);
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
    // `shape` names everything the options are built from; data arrives through the next effect.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  const count = props.series.reduce((n, s) => n + s.points.length, 0);
  return (
    <figure className="chart" data-testid={props.testId} data-points={count} data-series={props.series.map((s) => s.label).join('|')}>
      <div ref={box} className="chart-canvas" role="img" aria-label={props.summary} />
      {props.caption ? <figcaption className="chart-caption muted small">{props.caption}</figcaption> : null}
    </figure>
  );
}

/** 0.000213 → "2.13e-4", 1234 → "1234", 0.5 → "0.5". */
export function compact(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 0.001 || a >= 1e6) return v.toExponential(2).replace(/\.?0+e/, 'e');
  return String(Number(v.toPrecision(4)));
}
