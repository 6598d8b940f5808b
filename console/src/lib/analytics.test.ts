import { describe, expect, it } from "vitest";
import type { LatencyStat, OverviewMinute } from "../api/client";
import { buckets, latencySeries, overviewSeries, usageRows } from "./analytics";

const stat = (stage: string, p90: number, provider = "openai"): LatencyStat => ({
  stage, provider, model: "m", samples: 3, mean: p90, p50: p90 / 2, p90, p99: p90 * 2, max: p90 * 3,
});

describe("analytics shaping", () => {
  it("splits a range into equal buckets that end at its end", () => {
    const end = new Date("2026-03-01T12:00:00Z");
    const parts = buckets(end, 60, 12);
    expect(parts).toHaveLength(12);
    expect(parts[0].start).toBe("2026-03-01T11:00:00.000Z");
    expect(parts[0].end).toBe("2026-03-01T11:05:00.000Z");
    expect(parts[11].end).toBe(end.toISOString());
  });

  it("makes one latency line per stage and provider, in ms, with gaps as null", () => {
    const series = latencySeries([[stat("llm", 0.4)], [], [stat("llm", 0.5), stat("tts", 0.2, "festival")]], "p90");
    expect(series).toEqual([
      { name: "llm · openai/m", values: [400, null, 500] },
      { name: "tts · festival/m", values: [null, null, 200] },
    ]);
    expect(latencySeries([[stat("llm", 0.4)]], "p99")[0].values).toEqual([800]);
  });

  it("regroups minutes and recomputes the interruption rate from the sums", () => {
    const minute = (i: number, turns: number, interrupted: number): OverviewMinute => ({
      minute: new Date(Date.UTC(2026, 2, 1, 10, i)).toISOString(), sessions_started: 1, sessions_closed: 0,
      sessions_failed: 0, turns, interrupted_turns: interrupted, errors: i, interruption_rate: turns ? interrupted / turns : null,
    });
    const { perPoint, points } = overviewSeries([minute(0, 4, 1), minute(1, 0, 0), minute(2, 6, 3)], 2);
    expect(perPoint).toBe(2);
    expect(points.map((p) => [p.turns, p.interrupted, p.errors, p.sessions])).toEqual([[4, 1, 1, 2], [6, 3, 2, 1]]);
    expect(points[0].rate).toBeCloseTo(0.25);
    expect(overviewSeries([minute(0, 0, 0)]).points[0].rate).toBeNull();
  });

  it("orders usage by tokens", () => {
    const base = { requests: 1, cached_input_tokens: 0, characters: 0, audio_seconds: 0 };
    const rows = usageRows([
      { ...base, kind: "tts", provider: "festival", model: "slt", input_tokens: 0, output_tokens: 0, characters: 300 },
      { ...base, kind: "llm", provider: "openai", model: "gpt", input_tokens: 100, output_tokens: 20 },
    ]);
    expect(rows.map((r) => [r.label, r.tokens])).toEqual([["llm · openai/gpt", 120], ["tts · festival/slt", 0]]);
  });
});
