/**
 * A session's events, history then live, from `/v1/sessions/{id}/live` (Server-Sent
 * Events, `id` = sequence). The browser's EventSource resumes with `Last-Event-ID` after
 * a dropped connection, and the timeline ignores a sequence it already has, so neither a
 * reconnect nor a reload loses or repeats an event. The stream ends after
 * `session.closed`; the source is closed then, so it does not reconnect.
 */
import { useEffect, useRef, useState } from "react";
import { EVENT_TYPES } from "../generated";
import { type LogEvent, parseEvent } from "../lib/events";
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

export function useSessionEvents(sessionId: string): SessionEvents {
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
    const source = new EventSource(liveUrl(sessionId));
    const publish = () => {
      frame = 0;
      setState({ timeline: builder.current.build(), events: events.current.slice(), status, error });
    };
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(publish);
    };
    const onEvent = (message: MessageEvent<string>) => {
      const event = parseEvent(message.data);
      if (!event || !builder.current.add(event)) return;
      const list = events.current;
      if (list.length && list[list.length - 1].sequence > event.sequence) {
        list.splice(list.findIndex((e) => e.sequence > event.sequence), 0, event);
      } else list.push(event);
      if (event.type === CLOSED) {
        status = "ended";
        source.close();
      }
      schedule();
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent as EventListener);
    source.addEventListener("ready", () => {
      if (status === "connecting") status = "live";
      schedule();
    });
    source.addEventListener("error", (message: Event) => {
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
    });
    return () => {
      source.close();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [sessionId]);

  return state;
}
