/** Shaping analytics answers into chart series (pure, unit-tested). */
import type { LatencyStat, OverviewMinute, UsageStat } from "../api/client";

export interface Range {
  label: string;
  minutes: number;
}

export const RANGES: Range[] = [
  { label: "Last 15 minutes", minutes: 15 },
  { label: "Last hour", minutes: 60 },
  { label: "Last 6 hours", minutes: 360 },
  { label: "Last 24 hours", minutes: 1440 },
  { label: "Last 7 days", minutes: 10080 },
];

/** `buckets` equal windows covering [end - minutes, end), oldest first. */
export function buckets(end: Date, minutes: number, count: number): { start: string; end: string }[] {
  const spanMs = minutes * 60_000;
  const step = spanMs / count;
  const from = end.getTime() - spanMs;
  return Array.from({ length: count }, (_, i) => ({
    start: new Date(from + i * step).toISOString(),
    end: new Date(from + (i + 1) * step).toISOString(),
  }));
}

export type Percentile = "p50" | "p90" | "p99";

/** One line per (stage, provider/model): the percentile in each bucket, in ms (null when the
 * bucket has no sample). */
export function latencySeries(
  perBucket: LatencyStat[][],
  percentile: Percentile,
): { name: string; values: (number | null)[] }[] {
  const names = new Map<string, (number | null)[]>();
  perBucket.forEach((stats, i) => {
    for (const stat of stats) {
      const name = `${stat.stage} · ${stat.provider}/${stat.model}`;
      let values = names.get(name);
      if (!values) {
        values = Array<number | null>(perBucket.length).fill(null);
        names.set(name, values);
      }
      values[i] = Math.round(stat[percentile] * 1000);
    }
  });
  return [...names].sort(([a], [b]) => a.localeCompare(b)).map(([name, values]) => ({ name, values }));
}

/** Per-minute totals regrouped into at most `max` points (sums; interruption rate recomputed). */
export function overviewSeries(minutes: OverviewMinute[], max = 120) {
  const per = Math.max(1, Math.ceil(minutes.length / max));
  const points: { at: string; turns: number; interrupted: number; errors: number; sessions: number; rate: number | null }[] = [];
  for (let i = 0; i < minutes.length; i += per) {
    const group = minutes.slice(i, i + per);
    const turns = group.reduce((sum, m) => sum + m.turns, 0);
    const interrupted = group.reduce((sum, m) => sum + m.interrupted_turns, 0);
    points.push({
      at: group[0].minute,
      turns,
      interrupted,
      errors: group.reduce((sum, m) => sum + m.errors, 0),
      sessions: group.reduce((sum, m) => sum + m.sessions_started, 0),
      rate: turns ? interrupted / turns : null,
    });
  }
  return { perPoint: per, points };
}

/** Usage rows labelled `kind · provider/model`, largest token count first. */
export function usageRows(usage: UsageStat[]) {
  return usage
    .map((u) => ({ ...u, label: `${u.kind} · ${u.provider}/${u.model}`, tokens: u.input_tokens + u.output_tokens }))
    .sort((a, b) => b.tokens - a.tokens || b.characters - a.characters || a.label.localeCompare(b.label));
}
