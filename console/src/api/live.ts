/**
 * A session's events, history then live, from `/v1/sessions/{id}/live` (Server-Sent
 * Events, `id` = sequence; the history in `history` messages of many events each). The browser's EventSource resumes with `Last-Event-ID` after
 * a dropped connection, and the timeline ignores a sequence it already has, so neither a
 * reconnect nor a reload loses or repeats an event. The stream ends after
 * `session.closed`; the source is closed then, so it does not reconnect.
 */
import { useEffect, useRef, useState } from "react";
import { EVENT_TYPES } from "../generated";
import { type LogEvent, parseEvent, parseHistory } from "../lib/events";
import { type Timeline, TimelineBuilder } from "../lib/timeline";
import { liveUrl } from "./client";

export type LiveStatus = "connecting" | "live" | "ended" | "error";

export interface SessionEvents {
  timeline: Timeline;
  /** Every event received, in sequence order. */
  events: LogEvent[];
  status: LiveStatus;
  error: string | null;
}

const CLOSED = "turnlog.session.closed.v1";
const STREAM_MESSAGES = [...EVENT_TYPES, "history", "ready", "error"];

interface EarlyStream {
  sessionId: string;
  source: EventSource;
  buffered: Event[];
  keep: (message: Event) => void;
}

/** A stream opened before the page asked for it; the page adopts it once. The one piece
 * of module state: a hand-off, emptied by the first `adopt`. */
let early: EarlyStream | null = null;

/** Opens `sessionId`'s stream now (while the app still checks the sign-in and loads the
 * page), keeping its messages for `useSessionEvents`. */
export function prefetchSessionEvents(sessionId: string): void {
  const source = new EventSource(liveUrl(sessionId));
  const buffered: Event[] = [];
  const keep = (message: Event) => void buffered.push(message);
  for (const type of STREAM_MESSAGES) source.addEventListener(type, keep);
  early = { sessionId, source, buffered, keep };
}

function adopt(sessionId: string): { source: EventSource; buffered: Event[] } | null {
  const taken = early;
  early = null;
  if (!taken) return null;
  for (const type of STREAM_MESSAGES) taken.source.removeEventListener(type, taken.keep);
  if (taken.sessionId !== sessionId || taken.source.readyState === EventSource.CLOSED) {
    taken.source.close();
    return null;
  }
  return { source: taken.source, buffered: taken.buffered };
}

/** `generation`: a new value drops what was received and reads the stream again (after an
 * erasure, the events' personal fields read `[erased]`). */
export function useSessionEvents(sessionId: string, generation = 0): SessionEvents {
  const builder = useRef(new TimelineBuilder());
  const events = useRef<LogEvent[]>([]);
  const [state, setState] = useState<SessionEvents>(() => ({
    timeline: builder.current.build(), events: [], status: "connecting", error: null,
  }));

  useEffect(() => {
    builder.current = new TimelineBuilder();
    events.current = [];
    let frame = 0;
    let status: LiveStatus = "connecting";
    let error: string | null = null;
    // Read again: nothing received before stays on screen (it may be what was erased).
    if (generation !== 0) setState({ timeline: builder.current.build(), events: [], status, error });
    const adopted = generation === 0 ? adopt(sessionId) : null;
    const source = adopted?.source ?? new EventSource(liveUrl(sessionId));
    const publish = () => {
      frame = 0;
      setState({ timeline: builder.current.build(), events: events.current.slice(), status, error });
    };
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(publish);
    };
    const take = (event: LogEvent | null) => {
      if (!event || !builder.current.add(event)) return;
      const list = events.current;
      if (list.length && list[list.length - 1].sequence > event.sequence) {
        list.splice(list.findIndex((e) => e.sequence > event.sequence), 0, event);
      } else list.push(event);
      if (event.type === CLOSED) {
        status = "ended";
        source.close();
      }
    };
    const onEvent = (message: MessageEvent<string>) => {
      take(parseEvent(message.data));
      schedule();
    };
    // The history comes in batches: one message, a JSON array of events (far cheaper for
    // the browser than a message per event); its id is the batch's last sequence.
    const onHistory = (message: MessageEvent<string>) => {
      for (const event of parseHistory(message.data)) take(event);
      schedule();
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent as EventListener);
    source.addEventListener("history", onHistory as EventListener);
    const onReady = () => {
      if (status === "connecting") status = "live";
      schedule();
    };
    source.addEventListener("ready", onReady);
    const onError = (message: Event) => {
      if (message instanceof MessageEvent && typeof message.data === "string") {
        // The API's own `error` message: the stream cannot continue.
        error = (JSON.parse(message.data) as { error?: string }).error ?? "the live stream failed";
        status = "error";
        source.close();
      } else if (source.readyState === EventSource.CLOSED && status !== "ended") {
        error = "the live stream was refused (is the session still known to the API?)";
        status = "error";
      } else if (status !== "ended") {
        status = "connecting"; // EventSource reconnects by itself, from Last-Event-ID
      }
      schedule();
    };
    source.addEventListener("error", onError);
    // What the stream said before this page took it, in order, through the same handlers.
    for (const message of adopted?.buffered ?? []) {
      if (message.type === "history") onHistory(message as MessageEvent<string>);
      else if (message.type === "ready") onReady();
      else if (message.type === "error") onError(message);
      else onEvent(message as MessageEvent<string>);
    }
    return () => {
      source.close();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [sessionId, generation]);

  return state;
}
