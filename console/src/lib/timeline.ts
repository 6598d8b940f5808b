/**
 * A session's events shaped into its timeline: one row per turn (what the user said with
 * the interim transcripts before it, what the agent answered, the latency waterfall, tool
 * calls, interruptions, errors), plus what belongs to the whole session.
 *
 * Pure functions over the events in sequence order; an open session is re-shaped as its
 * events arrive (`TimelineBuilder` adds them incrementally, for long sessions).
 */
import type { ErrorDetail } from "../generated/turnlog.error.v1";
import type { ToolCall } from "../generated/turnlog.tools.executed.v1";
import type { ModelUsage } from "../generated/turnlog.usage.updated.v1";
import type { MessageMetrics } from "../generated/turnlog.conversation.item_added.v1";
import { dataOf, epochMs, type LogEvent, turnIdOf } from "./events";

/** One interim or final transcript of the user, timed from the turn's first transcript. */
export interface TranscriptStep {
  sequence: number;
  text: string;
  final: boolean;
  /** Milliseconds after the turn's first transcript. */
  atMs: number;
}

export interface Message {
  sequence: number;
  role: string;
  text: string;
  interrupted: boolean;
  agentId: string | null;
  metrics: MessageMetrics | null;
}

export interface WaterfallStage {
  key: "transcription" | "eou" | "llm" | "tts" | "e2e";
  label: string;
  /** Seconds after the end of the user's speech. */
  start: number;
  duration: number;
}

export interface Waterfall {
  stages: WaterfallStage[];
  /** The furthest a stage reaches, in seconds (the chart's width). */
  span: number;
}

export interface Turn {
  id: string;
  /** 1, 2, 3... in the order turns opened. */
  index: number;
  startedAt: string;
  firstSequence: number;
  lastSequence: number;
  transcripts: TranscriptStep[];
  userMessages: Message[];
  agentMessages: Message[];
  tools: ToolCall[];
  errors: ErrorDetail[];
  /** The agent was cut short (interrupted answer or an overlap the agent yielded to). */
  interrupted: boolean;
  falseInterruptions: number;
  waterfall: Waterfall | null;
  eventCount: number;
}

export interface SessionFacts {
  startedAt: string | null;
  closedAt: string | null;
  closeReason: string | null;
  agentName: string | null;
  room: string | null;
  models: { stt: string | null; llm: string | null; tts: string | null };
  participants: string[];
  /** The latest cumulative usage (never summed). */
  usage: ModelUsage;
  /** Errors outside any turn. */
  errors: ErrorDetail[];
  eventCount: number;
  lastSequence: number;
}

export interface Timeline {
  session: SessionFacts;
  turns: Turn[];
}

function modelName(info: { provider?: string | null; model?: string | null } | null | undefined): string | null {
  if (!info) return null;
  const parts = [info.provider, info.model].filter((part): part is string => !!part);
  return parts.length ? parts.join(" / ") : null;
}

/**
 * The latency waterfall of a turn, from LiveKit's per-message metrics, laid out from the
 * end of the user's speech (t = 0): transcription and end of utterance run from 0; the
 * LLM starts when the turn is decided (end of utterance, plus the on-turn-completed hook)
 * and runs to its first token; TTS starts at that first token and runs to its first
 * audio byte; end to end spans 0 to the agent's first audio. Stages without a figure are
 * left out; null when the turn has none.
 */
export function waterfallOf(user: MessageMetrics | null, agent: MessageMetrics | null): Waterfall | null {
  const stages: WaterfallStage[] = [];
  const num = (value: number | null | undefined): number | null =>
    typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : null;
  const transcription = num(user?.transcription_delay);
  const eou = num(user?.end_of_turn_delay);
  const hook = num(user?.on_user_turn_completed_delay) ?? 0;
  const ttft = num(agent?.llm_node_ttft);
  const ttfb = num(agent?.tts_node_ttfb);
  const e2e = num(agent?.e2e_latency);
  if (transcription !== null) stages.push({ key: "transcription", label: "Transcription", start: 0, duration: transcription });
  if (eou !== null) stages.push({ key: "eou", label: "End of utterance", start: 0, duration: eou });
  const llmStart = (eou ?? 0) + hook;
  if (ttft !== null) stages.push({ key: "llm", label: "LLM first token", start: llmStart, duration: ttft });
  if (ttfb !== null) stages.push({ key: "tts", label: "TTS first byte", start: llmStart + (ttft ?? 0), duration: ttfb });
  if (e2e !== null) stages.push({ key: "e2e", label: "End to end", start: 0, duration: e2e });
  if (!stages.length) return null;
  return { stages, span: Math.max(...stages.map((s) => s.start + s.duration)) };
}

interface TurnDraft extends Turn {
  firstTranscriptMs: number | null;
}

function newTurn(id: string, index: number, event: LogEvent): TurnDraft {
  return {
    id, index, startedAt: event.time, firstSequence: event.sequence, lastSequence: event.sequence,
    transcripts: [], userMessages: [], agentMessages: [], tools: [], errors: [],
    interrupted: false, falseInterruptions: 0, waterfall: null, eventCount: 0, firstTranscriptMs: null,
  };
}

/** Builds a timeline event by event (in sequence order; a repeated sequence is ignored). */
export class TimelineBuilder {
  private readonly turns = new Map<string, TurnDraft>();
  private readonly order: TurnDraft[] = [];
  private readonly seen = new Set<number>();
  private readonly session: SessionFacts = {
    startedAt: null, closedAt: null, closeReason: null, agentName: null, room: null,
    models: { stt: null, llm: null, tts: null }, participants: [], usage: [], errors: [],
    eventCount: 0, lastSequence: 0,
  };
  private version = 0;

  /** Adds one event; returns whether it was new. */
  add(event: LogEvent): boolean {
    if (this.seen.has(event.sequence)) return false;
    this.seen.add(event.sequence);
    this.version += 1;
    const session = this.session;
    session.eventCount += 1;
    session.lastSequence = Math.max(session.lastSequence, event.sequence);
    session.room ??= event.subject ?? null;
    const turnId = turnIdOf(event);
    const turn = turnId === null ? null : this.turnOf(turnId, event);
    if (turn) {
      this.dirty.add(turn.id);
      turn.eventCount += 1;
      turn.lastSequence = Math.max(turn.lastSequence, event.sequence);
    }
    this.apply(event, turn);
    return true;
  }

  private turnOf(id: string, event: LogEvent): TurnDraft {
    let turn = this.turns.get(id);
    if (!turn) {
      turn = newTurn(id, this.order.length + 1, event);
      this.turns.set(id, turn);
      this.order.push(turn);
    }
    return turn;
  }

  private apply(event: LogEvent, turn: TurnDraft | null): void {
    const session = this.session;
    const started = dataOf(event, "turnlog.session.started.v1");
    if (started) {
      session.startedAt = event.time;
      session.agentName = started.agent_name ?? null;
      session.models = { stt: modelName(started.stt), llm: modelName(started.llm), tts: modelName(started.tts) };
      return;
    }
    const closed = dataOf(event, "turnlog.session.closed.v1");
    if (closed) {
      session.closedAt = event.time;
      session.closeReason = closed.reason ?? null;
      if (closed.error) session.errors.push(closed.error);
      return;
    }
    const joined = dataOf(event, "turnlog.participant.joined.v1");
    if (joined) {
      if (!session.participants.includes(joined.identity)) session.participants.push(joined.identity);
      return;
    }
    const usage = dataOf(event, "turnlog.usage.updated.v1");
    if (usage) {
      session.usage = usage.model_usage;
      return;
    }
    const error = dataOf(event, "turnlog.error.v1");
    if (error) {
      (turn ? turn.errors : session.errors).push(error.error);
      return;
    }
    if (!turn) return;
    const transcribed = dataOf(event, "turnlog.user.transcribed.v1");
    if (transcribed) {
      const at = epochMs(event.time);
      turn.firstTranscriptMs ??= at;
      turn.transcripts.push({
        sequence: event.sequence, text: transcribed.transcript, final: transcribed.is_final,
        atMs: Math.max(0, at - turn.firstTranscriptMs),
      });
      return;
    }
    const item = dataOf(event, "turnlog.conversation.item_added.v1");
    if (item) {
      const message: Message = {
        sequence: event.sequence, role: item.role, text: item.text ?? "", interrupted: !!item.interrupted,
        agentId: item.agent_id ?? null, metrics: item.metrics ?? null,
      };
      if (item.role === "user") turn.userMessages.push(message);
      else if (item.role === "assistant") {
        turn.agentMessages.push(message);
        if (message.interrupted) turn.interrupted = true;
      }
      turn.waterfall = waterfallOf(
        turn.userMessages.find((m) => m.metrics)?.metrics ?? null,
        turn.agentMessages.find((m) => m.metrics)?.metrics ?? null,
      );
      return;
    }
    const tools = dataOf(event, "turnlog.tools.executed.v1");
    if (tools) {
      turn.tools.push(...tools.calls);
      return;
    }
    if (dataOf(event, "turnlog.agent.false_interruption.v1")) {
      turn.falseInterruptions += 1;
      return;
    }
    const overlap = dataOf(event, "turnlog.user.overlapping_speech.v1");
    if (overlap?.is_interruption) turn.interrupted = true;
  }

  /** The timeline so far; a new object when anything changed since the last call. */
  build(): Timeline {
    if (this.cached && this.cachedVersion === this.version) return this.cached;
    // Unchanged turns keep their object, so a long live timeline re-renders only what moved.
    const turns: Turn[] = this.order.map((draft) => {
      const kept = this.snapshots.get(draft.id);
      if (kept && !this.dirty.has(draft.id)) return kept;
      const { firstTranscriptMs: _omit, ...turn } = draft;
      const snapshot: Turn = {
        ...turn,
        transcripts: [...turn.transcripts],
        userMessages: [...turn.userMessages],
        agentMessages: [...turn.agentMessages],
        tools: [...turn.tools],
        errors: [...turn.errors],
      };
      this.snapshots.set(draft.id, snapshot);
      return snapshot;
    });
    this.dirty.clear();
    this.cached = { session: { ...this.session, errors: [...this.session.errors], participants: [...this.session.participants] }, turns };
    this.cachedVersion = this.version;
    return this.cached;
  }

  private readonly snapshots = new Map<string, Turn>();
  private readonly dirty = new Set<string>();
  private cached: Timeline | null = null;
  private cachedVersion = -1;
}

/** The timeline of `events` (any order; repeated sequences count once). */
export function buildTimeline(events: readonly LogEvent[]): Timeline {
  const builder = new TimelineBuilder();
  for (const event of [...events].sort((a, b) => a.sequence - b.sequence)) builder.add(event);
  return builder.build();
}

/** The interim transcripts that led to each final one: a chain per final transcript. */
export function interimChains(steps: readonly TranscriptStep[]): TranscriptStep[][] {
  const chains: TranscriptStep[][] = [];
  let current: TranscriptStep[] = [];
  for (const step of steps) {
    current.push(step);
    if (step.final) {
      chains.push(current);
      current = [];
    }
  }
  if (current.length) chains.push(current);
  return chains;
}
