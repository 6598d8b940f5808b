import { describe, expect, it } from "vitest";
import type { LogEvent } from "./events";
import { buildTimeline, interimChains, TimelineBuilder, waterfallOf } from "./timeline";

let seq = 0;
const T0 = Date.parse("2026-03-01T10:00:00Z");

function ev(type: string, data: Record<string, unknown>, atMs: number): LogEvent {
  seq += 1;
  return {
    id: `e${seq}`, type: `turnlog.${type}.v1`, source: "/agents/tutor/w1", time: new Date(T0 + atMs).toISOString(),
    sequence: seq, sessionid: "s1", subject: "room-1", data,
  };
}

function conversation(): LogEvent[] {
  seq = 0;
  return [
    ev("session.started", { agent_name: "tutor", job_id: "j", stt: { provider: "pocketsphinx", model: "en-us" }, llm: { provider: "turnlog", model: "tutor" }, tts: { provider: "festival", model: "slt" } }, 0),
    ev("participant.joined", { identity: "web-1", kind: "standard", sid: "PA_1" }, 10),
    ev("user.transcribed", { transcript: "what is", is_final: false, turn_id: "t1" }, 1000),
    ev("user.transcribed", { transcript: "what is seven", is_final: false, turn_id: "t1" }, 1250),
    ev("user.transcribed", { transcript: "what is seven times eight", is_final: true, turn_id: "t1" }, 1600),
    ev("conversation.item_added", { role: "user", text: "what is seven times eight", interrupted: false, turn_id: "t1",
      metrics: { transcription_delay: 0.2, end_of_turn_delay: 0.5, on_user_turn_completed_delay: 0.1 } }, 1700),
    ev("tools.executed", { turn_id: "t1", calls: [{ call_id: "c1", name: "multiply", arguments: '{"a":7,"b":8}', output: "56", is_error: false, duration: 0.01 }] }, 1800),
    ev("conversation.item_added", { role: "assistant", text: "Fifty-six.", interrupted: true, turn_id: "t1",
      metrics: { llm_node_ttft: 0.3, tts_node_ttfb: 0.15, e2e_latency: 1.1 } }, 2500),
    ev("error", { turn_id: "t1", error: { source: "tts", message: "slow", recoverable: true } }, 2600),
    ev("usage.updated", { model_usage: [{ kind: "llm", provider: "turnlog", model: "tutor", input_tokens: 5, output_tokens: 2 }] }, 2700),
    ev("usage.updated", { model_usage: [{ kind: "llm", provider: "turnlog", model: "tutor", input_tokens: 9, output_tokens: 4 }] }, 2800),
    ev("speech.created", { turn_id: "t2", source: "say", user_initiated: false, allow_interruptions: true, speech_id: "sp" }, 3000),
    ev("agent.false_interruption", { turn_id: "t2", resumed: true }, 3100),
    ev("session.closed", { reason: "participant_disconnected" }, 4000),
  ];
}

describe("turn grouping", () => {
  it("groups facts by turn id in the order turns opened", () => {
    const timeline = buildTimeline(conversation());
    expect(timeline.turns.map((t) => [t.id, t.index])).toEqual([["t1", 1], ["t2", 2]]);
    const [t1, t2] = timeline.turns;
    expect(t1.userMessages.map((m) => m.text)).toEqual(["what is seven times eight"]);
    expect(t1.agentMessages.map((m) => m.text)).toEqual(["Fifty-six."]);
    expect(t1.tools.map((c) => [c.name, c.output])).toEqual([["multiply", "56"]]);
    expect(t1.errors.map((e) => e.message)).toEqual(["slow"]);
    expect(t1.interrupted).toBe(true);
    expect([t1.firstSequence, t1.lastSequence, t1.eventCount]).toEqual([3, 9, 7]);
    expect(t2.falseInterruptions).toBe(1);
    expect(t2.waterfall).toBeNull();
  });

  it("keeps session facts apart, and the latest cumulative usage (never a sum)", () => {
    const { session } = buildTimeline(conversation());
    expect(session.agentName).toBe("tutor");
    expect(session.room).toBe("room-1");
    expect(session.models).toEqual({ stt: "pocketsphinx / en-us", llm: "turnlog / tutor", tts: "festival / slt" });
    expect(session.participants).toEqual(["web-1"]);
    expect(session.usage).toEqual([{ kind: "llm", provider: "turnlog", model: "tutor", input_tokens: 9, output_tokens: 4 }]);
    expect(session.closeReason).toBe("participant_disconnected");
    expect([session.eventCount, session.lastSequence]).toEqual([14, 14]);
  });

  it("ignores a repeated sequence and accepts events out of order", () => {
    const events = conversation();
    const shuffled = [events[5], ...events.slice(0, 5).reverse(), ...events.slice(6), events[2], events[7]];
    const timeline = buildTimeline(shuffled);
    expect(timeline.session.eventCount).toBe(14);
    expect(timeline.turns[0].transcripts.map((t) => t.text)).toEqual(["what is", "what is seven", "what is seven times eight"]);
    expect(timeline.turns[0].agentMessages).toHaveLength(1);
  });

  it("keeps unchanged turns' objects between builds, and replaces a changed one", () => {
    const events = conversation();
    const builder = new TimelineBuilder();
    events.slice(0, 12).forEach((e) => builder.add(e));
    const first = builder.build();
    expect(builder.add(events[2])).toBe(false);
    expect(builder.build()).toBe(first);
    builder.add(events[12]);
    const second = builder.build();
    expect(second.turns[0]).toBe(first.turns[0]);
    expect(second.turns[1]).not.toBe(first.turns[1]);
    expect(second.turns[1].falseInterruptions).toBe(1);
  });
});

describe("waterfall numbers", () => {
  it("lays the stages out from the end of the user's speech", () => {
    const t1 = buildTimeline(conversation()).turns[0];
    const stages = Object.fromEntries(t1.waterfall!.stages.map((s) => [s.key, [s.start, s.duration]]));
    expect(stages.transcription).toEqual([0, 0.2]);
    expect(stages.eou).toEqual([0, 0.5]);
    expect(stages.llm[0]).toBeCloseTo(0.6); // end of utterance + on-turn-completed hook
    expect(stages.llm[1]).toBeCloseTo(0.3);
    expect(stages.tts[0]).toBeCloseTo(0.9); // after the LLM's first token
    expect(stages.tts[1]).toBeCloseTo(0.15);
    expect(stages.e2e).toEqual([0, 1.1]);
    expect(t1.waterfall!.span).toBeCloseTo(1.1);
  });

  it("leaves out stages without a figure, and has none without metrics", () => {
    const only = waterfallOf(null, { e2e_latency: 0.8, llm_node_ttft: null, tts_node_ttfb: -1 });
    expect(only!.stages.map((s) => s.key)).toEqual(["e2e"]);
    expect(waterfallOf(null, null)).toBeNull();
    const llm = waterfallOf({}, { llm_node_ttft: 0.4 });
    expect(llm!.stages).toEqual([{ key: "llm", label: "LLM first token", start: 0, duration: 0.4 }]);
  });
});

describe("interim chains", () => {
  it("times interims from the turn's first transcript and chains them to their final", () => {
    const t1 = buildTimeline(conversation()).turns[0];
    expect(t1.transcripts.map((t) => t.atMs)).toEqual([0, 250, 600]);
    const chains = interimChains([
      ...t1.transcripts,
      { sequence: 90, text: "and nine", final: false, atMs: 900 },
    ]);
    expect(chains.map((c) => c.map((s) => s.text))).toEqual([
      ["what is", "what is seven", "what is seven times eight"],
      ["and nine"],
    ]);
    expect(chains[0].at(-1)!.final).toBe(true);
    expect(chains[1].at(-1)!.final).toBe(false);
  });
});

describe("history batches", () => {
  it("parses a history message into events, leaving out what is not one", async () => {
    const { parseHistory } = await import("./events");
    const events = conversation().slice(0, 3);
    const parsed = parseHistory(JSON.stringify([...events, { type: 3 }, "x", { type: "t" }]));
    expect(parsed.map((e) => e.sequence)).toEqual([1, 2, 3]);
    expect(parseHistory("not json")).toEqual([]);
    expect(parseHistory('{"type": "turnlog.error.v1", "sequence": 1}')).toEqual([]);
    expect(buildTimeline(parsed).session.participants).toEqual(["web-1"]);
  });
});
