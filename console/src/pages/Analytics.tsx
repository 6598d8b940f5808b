/** Analytics over a time range: latency percentiles by stage and provider over time,
 * turns and interruption rate, errors per minute, usage by model. */
import { useEffect, useMemo, useState } from "react";
import { ApiError, type LatencyStat, type OverviewMinute, type UsageStat } from "../api/client";
import { useAuth } from "../auth";
import { Chart, type ChartOption } from "../components/Chart";
import { buckets, latencySeries, overviewSeries, type Percentile, RANGES, usageRows } from "../lib/analytics";
import { count, seconds } from "../lib/format";
import { Alert } from "../components/Alert";

const BUCKETS = 12;

interface Data {
  at: string[];
  latency: LatencyStat[][];
  window: LatencyStat[];
  overview: OverviewMinute[];
  usage: UsageStat[];
}

function timeLabel(iso: string, minutes: number): string {
  const date = new Date(iso);
  return minutes > 1440
    ? date.toLocaleDateString([], { month: "short", day: "numeric" })
    : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
}

export default function AnalyticsPage() {
  const { api } = useAuth();
  const [minutes, setMinutes] = useState(60);
  const [percentile, setPercentile] = useState<Percentile>("p90");
  const [data, setData] = useState<Data | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [refresh, setRefresh] = useState(0);

  useEffect(() => {
    let current = true;
    const end = new Date();
    const windows = buckets(end, minutes, BUCKETS);
    const start = windows[0].start;
    const overviewStart = new Date(Math.max(Date.parse(start), end.getTime() - 7 * 86_400_000)).toISOString();
    setError(null);
    Promise.all([
      Promise.all(windows.map((w) => api.latency(w.start, w.end).then((r) => r.stats))),
      api.latency(start, end.toISOString()),
      api.overview(overviewStart, end.toISOString()),
      api.usage(start, end.toISOString()),
    ])
      .then(([perBucket, window, overview, usage]) => {
        if (current)
          setData({ at: windows.map((w) => w.end), latency: perBucket, window: window.stats, overview: overview.minutes, usage: usage.usage });
      })
      .catch((failure) => current && setError(failure instanceof ApiError ? failure.message : String(failure)));
    return () => {
      current = false;
    };
  }, [api, minutes, refresh]);

  const latencyOption = useMemo<ChartOption | null>(() => {
    if (!data) return null;
    const series = latencySeries(data.latency, percentile);
    return {
      tooltip: { trigger: "axis", valueFormatter: (v: unknown) => (v == null ? "–" : `${String(v)} ms`) },
      legend: { type: "scroll", bottom: 0 },
      grid: { left: 8, right: 16, top: 36, bottom: 48, containLabel: true },
      xAxis: { type: "category", data: data.at.map((t) => timeLabel(t, minutes)) },
      yAxis: { type: "value", name: "ms" },
      series: series.map((s) => ({ name: s.name, type: "line", data: s.values, connectNulls: true, showSymbol: true })),
    };
  }, [data, percentile, minutes]);

  const overview = useMemo(() => (data ? overviewSeries(data.overview) : null), [data]);
  const activityOption = useMemo<ChartOption | null>(() => {
    if (!overview) return null;
    const labels = overview.points.map((p) => timeLabel(p.at, minutes));
    return {
      tooltip: { trigger: "axis" },
      legend: { bottom: 0 },
      grid: { left: 8, right: 8, top: 36, bottom: 48, containLabel: true },
      xAxis: { type: "category", data: labels },
      yAxis: [
        { type: "value", name: "count" },
        { type: "value", name: "rate", min: 0, max: 1 },
      ],
      series: [
        { name: "Turns", type: "bar", data: overview.points.map((p) => p.turns) },
        { name: "Errors", type: "bar", data: overview.points.map((p) => p.errors) },
        { name: "Interruption rate", type: "line", yAxisIndex: 1, data: overview.points.map((p) => (p.rate === null ? null : Number(p.rate.toFixed(3)))) },
      ],
    };
  }, [overview, minutes]);

  const usage = useMemo(() => (data ? usageRows(data.usage) : []), [data]);
  const usageOption = useMemo<ChartOption | null>(() => {
    if (!usage.length) return null;
    return {
      tooltip: { trigger: "axis" },
      legend: { bottom: 0 },
      grid: { left: 8, right: 24, top: 16, bottom: 48, containLabel: true },
      xAxis: { type: "value" },
      yAxis: { type: "category", data: usage.map((u) => u.label), inverse: true },
      series: [
        { name: "Input tokens", type: "bar", stack: "t", data: usage.map((u) => u.input_tokens) },
        { name: "Output tokens", type: "bar", stack: "t", data: usage.map((u) => u.output_tokens) },
        { name: "Characters", type: "bar", data: usage.map((u) => u.characters) },
      ],
    };
  }, [usage]);

  return (
    <section aria-labelledby="analytics-title">
      <h1 id="analytics-title">Analytics</h1>
      <div className="filters card">
        <label>
          Time range
          <select value={minutes} onChange={(event) => setMinutes(Number(event.target.value))}>
            {RANGES.map((r) => (
              <option key={r.minutes} value={r.minutes}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Percentile
          <select value={percentile} onChange={(event) => setPercentile(event.target.value as Percentile)}>
            <option value="p50">p50</option>
            <option value="p90">p90</option>
            <option value="p99">p99</option>
          </select>
        </label>
        <button type="button" className="secondary" onClick={() => setRefresh((n) => n + 1)}>
          Refresh
        </button>
      </div>
      <Alert>{error}</Alert>
      {!data && !error && <p role="status" className="muted">Loading…</p>}
      {data && (
        <div className="charts">
          <div className="card">
            <h2>Latency {percentile} by stage and provider</h2>
            {latencyOption && <Chart option={latencyOption} label={`Latency ${percentile} by stage over time`} />}
            <table className="compact">
              <caption>Whole range</caption>
              <thead>
                <tr>
                  <th scope="col">Stage</th>
                  <th scope="col">Provider / model</th>
                  <th scope="col">Samples</th>
                  <th scope="col">p50</th>
                  <th scope="col">p90</th>
                  <th scope="col">p99</th>
                </tr>
              </thead>
              <tbody>
                {data.window.map((s) => (
                  <tr key={`${s.stage}-${s.provider}-${s.model}`}>
                    <td>{s.stage}</td>
                    <td>
                      {s.provider}/{s.model}
                    </td>
                    <td>{count(s.samples)}</td>
                    <td>{seconds(s.p50)}</td>
                    <td>{seconds(s.p90)}</td>
                    <td>{seconds(s.p99)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <div className="card">
            <h2>Turns, errors and interruption rate{overview && overview.perPoint > 1 ? ` (per ${overview.perPoint} minutes)` : " per minute"}</h2>
            {activityOption && <Chart option={activityOption} label="Turns, errors and interruption rate over time" />}
          </div>
          <div className="card">
            <h2>Usage by model</h2>
            {usageOption ? <Chart option={usageOption} label="Usage by model" height={Math.max(160, usage.length * 40 + 80)} /> : <p className="muted">No usage in this range.</p>}
          </div>
        </div>
      )}
    </section>
  );
}
