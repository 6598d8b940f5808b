/** One session as a timeline: a row per turn (virtualised: sessions run to thousands of
 * turns), the session's usage and errors, and every raw event. An open session updates
 * live; a reload resumes with nothing lost. An erased session shows its erasure, and an
 * admin key may erase one from here. */
import { useVirtualizer } from "@tanstack/react-virtual";
import { useEffect, useMemo, useRef, useState } from "react";
import { Link, useParams } from "react-router-dom";
import { ApiError, type Erasure, type SessionDetail } from "../api/client";
import { useSessionEvents } from "../api/live";
import { useAuth } from "../auth";
import { EraseAction } from "../components/EraseAction";
import { ErasurePanel } from "../components/ErasurePanel";
import { JsonDialog } from "../components/JsonDialog";
import { PersonalText } from "../components/PersonalText";
import { TurnRow } from "../components/TurnRow";
import type { ModelUsage } from "../generated/turnlog.usage.updated.v1";
import { canErase, hasErasedText, withErasure } from "../lib/erasure";
import { type LogEvent, shortType, turnIdOf } from "../lib/events";
import { clock, count, dateTime, seconds } from "../lib/format";
import type { Turn } from "../lib/timeline";
import { Alert } from "../components/Alert";

const PENDING_REFRESH_MS = 5000;

export default function TimelinePage() {
  const { sessionId = "" } = useParams();
  const { api, session: auth } = useAuth();
  const [generation, setGeneration] = useState(0);
  const { timeline, events, status, error } = useSessionEvents(sessionId, generation);
  const [detail, setDetail] = useState<SessionDetail | null>(null);
  const [detailError, setDetailError] = useState<string | null>(null);
  const [tab, setTab] = useState<"turns" | "events">("turns");
  const [opened, setOpened] = useState<LogEvent | null>(null);

  useEffect(() => {
    api
      .session(sessionId)
      .then(setDetail)
      .catch((failure) => setDetailError(failure instanceof ApiError ? failure.message : String(failure)));
  }, [api, sessionId, status]);

  const erasure = detail?.erasure ?? null;
  // A pending erasure completes on its own (once Kafka answers): follow it.
  useEffect(() => {
    if (erasure?.status !== "pending") return;
    const timer = setInterval(() => {
      api.session(sessionId).then(setDetail).catch(() => undefined);
    }, PENDING_REFRESH_MS);
    return () => clearInterval(timer);
  }, [api, sessionId, erasure?.status]);

  const erased = (result: Erasure) => {
    setDetail((current) => (current ? withErasure(current, result) : current));
    setGeneration((n) => n + 1); // read the events again: their personal fields now read [erased]
  };

  const session = timeline.session;
  const live = status !== "ended" && !session.closedAt && detail?.status !== "closed";
  return (
    <section aria-labelledby="timeline-title" className="timeline-page">
      <p>
        <Link to="/sessions">← Sessions</Link>
      </p>
      <h1 id="timeline-title">
        {session.room ?? detail?.room ?? "Session"}{" "}
        {live ? <span className="badge live">live</span> : <span className="badge closed">{detail?.status ?? "closed"}</span>}
        {erasure && <span className="badge erased">Erased</span>}
      </h1>
      <div className="session-id-bar">
        <p className="muted mono">{sessionId}</p>
        {detail && !erasure && canErase(auth.scopes) && <EraseAction sessionId={sessionId} onErased={erased} />}
      </div>
      <Alert>{detailError}</Alert>
      {erasure && <ErasurePanel erasure={erasure} />}
      {error && <Alert>Live stream: {error}</Alert>}
      <dl className="facts card">
        <div><dt>Agent</dt><dd>{session.agentName ?? detail?.agent_name ?? "–"}</dd></div>
        <div><dt>Started</dt><dd>{dateTime(session.startedAt ?? detail?.started_at)}</dd></div>
        <div><dt>Ended</dt><dd>{session.closedAt ? `${clock(session.closedAt)} (${session.closeReason ?? "closed"})` : "–"}</dd></div>
        <div><dt>Turns</dt><dd>{timeline.turns.length}</dd></div>
        <div><dt>Events</dt><dd>{count(session.eventCount)}</dd></div>
        <div><dt>Participants</dt><dd>{erasure ? <PersonalText text="[erased]" /> : session.participants.join(", ") || "–"}</dd></div>
        <div><dt>STT</dt><dd>{session.models.stt ?? "–"}</dd></div>
        <div><dt>LLM</dt><dd>{session.models.llm ?? "–"}</dd></div>
        <div><dt>TTS</dt><dd>{session.models.tts ?? "–"}</dd></div>
        <div><dt>End to end p50</dt><dd>{seconds(detail?.latency.e2e_p50_s)}</dd></div>
      </dl>
      <UsageTable usage={session.usage} />
      {session.errors.length > 0 && (
        <div className="card error-list" role="note">
          <h2>Session errors</h2>
          <ul>
            {session.errors.map((e, i) => (
              <li key={i}>
                {e.source}: <PersonalText text={e.message} />
              </li>
            ))}
          </ul>
        </div>
      )}
      <div className="tab-bar">
        <div className="tabs" role="tablist" aria-label="Timeline views">
          <button type="button" role="tab" aria-selected={tab === "turns"} onClick={() => setTab("turns")}>
            Turns ({timeline.turns.length})
          </button>
          <button type="button" role="tab" aria-selected={tab === "events"} onClick={() => setTab("events")}>
            Raw events ({events.length})
          </button>
        </div>
        <p className="muted live-status" role="status">
          {status === "connecting" ? "connecting…" : status === "live" ? "following live" : status === "ended" ? "session ended" : ""}
        </p>
      </div>
      {erasure && (
        <p className="card erased-content" role="note">
          The content of this conversation was erased: what the user and the agent said, transcripts and tool
          arguments read <PersonalText text="[erased]" />. Each turn keeps its timing and latency.
        </p>
      )}
      {tab === "turns" ? (
        <TurnList turns={timeline.turns} erased={!!erasure} />
      ) : (
        <EventList events={events} onOpen={setOpened} />
      )}
      <JsonDialog event={opened} onClose={() => setOpened(null)} />
    </section>
  );
}

function UsageTable({ usage }: { usage: ModelUsage }) {
  if (!usage.length) return null;
  return (
    <table className="usage card">
      <caption>Usage of the session (latest cumulative figures)</caption>
      <thead>
        <tr>
          <th scope="col">Kind</th>
          <th scope="col">Provider / model</th>
          <th scope="col">Input tokens</th>
          <th scope="col">Output tokens</th>
          <th scope="col">Characters</th>
          <th scope="col">Audio</th>
        </tr>
      </thead>
      <tbody>
        {usage.map((u, i) => {
          const row = u as unknown as Record<string, unknown>;
          const num = (name: string) => (typeof row[name] === "number" ? (row[name] as number) : null);
          return (
            <tr key={i}>
              <td>{String(row.kind ?? "")}</td>
              <td>{[row.provider, row.model].filter(Boolean).join(" / ")}</td>
              <td>{count(num("input_tokens"))}</td>
              <td>{count(num("output_tokens"))}</td>
              <td>{count(num("characters_count"))}</td>
              <td>{seconds(num("audio_duration"), 1)}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function TurnList({ turns, erased }: { turns: Turn[]; erased: boolean }) {
  const parent = useRef<HTMLDivElement>(null);
  // One time scale for every waterfall, so bars compare across turns.
  const scale = useMemo(() => Math.max(0.5, ...turns.map((t) => t.waterfall?.span ?? 0)), [turns]);
  const virtualizer = useVirtualizer({
    count: turns.length,
    getScrollElement: () => parent.current,
    estimateSize: () => 180,
    overscan: 4,
    getItemKey: (index) => turns[index].id,
  });
  if (!turns.length) return <p className="muted">{erased ? "No turn to show: the content was erased." : "No turn yet."}</p>;
  return (
    <div ref={parent} className="scroller" data-testid="turns">
      <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
        {virtualizer.getVirtualItems().map((item) => (
          <div
            key={item.key}
            data-index={item.index}
            ref={virtualizer.measureElement}
            style={{ position: "absolute", top: 0, left: 0, width: "100%", transform: `translateY(${item.start}px)` }}
          >
            <TurnRow turn={turns[item.index]} scale={scale} />
          </div>
        ))}
      </div>
    </div>
  );
}

function EventList({ events, onOpen }: { events: LogEvent[]; onOpen: (event: LogEvent) => void }) {
  const parent = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: events.length,
    getScrollElement: () => parent.current,
    estimateSize: () => 34,
    overscan: 12,
  });
  return (
    <div ref={parent} className="scroller" data-testid="events">
      <ol style={{ height: virtualizer.getTotalSize(), position: "relative" }} className="event-list">
        {virtualizer.getVirtualItems().map((item) => {
          const event = events[item.index];
          return (
            <li
              key={event.sequence}
              style={{ position: "absolute", top: 0, left: 0, width: "100%", height: item.size, transform: `translateY(${item.start}px)` }}
            >
              <button type="button" className="event-row" onClick={() => onOpen(event)}>
                <span className="mono seq">#{event.sequence}</span>
                <span className="mono">{clock(event.time)}</span>
                <span className="etype">{shortType(event.type)}</span>
                <span className="muted mono">{turnIdOf(event) ?? ""}</span>
                <span>{hasErasedText(event.data) && <span className="erased-text">[erased]</span>}</span>
              </button>
            </li>
          );
        })}
      </ol>
    </div>
  );
}
