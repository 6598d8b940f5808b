/** Events as the API streams them: CloudEvents from the log, typed by the catalog. */
import type { EventDataByType, EventType } from "../generated";

/** One event of a session, exactly as recorded (the CloudEvents envelope). */
export interface LogEvent {
  id: string;
  type: string;
  source: string;
  time: string;
  sequence: number;
  sessionid: string;
  subject?: string | null;
  data: Record<string, unknown>;
}

/** The payload of `event` when it is of `type`, typed from the catalog; else null. */
export function dataOf<T extends EventType>(event: LogEvent, type: T): EventDataByType[T] | null {
  return event.type === type ? (event.data as unknown as EventDataByType[T]) : null;
}

/** The turn an event belongs to (`data.turn_id`), or null for a session-scoped fact. */
export function turnIdOf(event: LogEvent): string | null {
  const id = event.data["turn_id"];
  return typeof id === "string" && id !== "" ? id : null;
}

/** The catalog's short name of a type: `turnlog.user.transcribed.v1` -> `user.transcribed`. */
export function shortType(type: string): string {
  return type.replace(/^turnlog\./, "").replace(/\.v\d+$/, "");
}

/** Milliseconds since the epoch of an RFC 3339 time (NaN when unreadable). */
export function epochMs(time: string | null | undefined): number {
  return time ? Date.parse(time) : Number.NaN;
}

/** Parses one SSE `data` field into an event; null when it is not one. */
export function parseEvent(text: string): LogEvent | null {
  try {
    const value = JSON.parse(text) as Partial<LogEvent>;
    if (typeof value.type !== "string" || typeof value.sequence !== "number") return null;
    return { ...value, data: (value.data ?? {}) as Record<string, unknown> } as LogEvent;
  } catch {
    return null;
  }
}

/** Parses a `history` message: a JSON array of events; what is not an event is left out. */
export function parseHistory(text: string): LogEvent[] {
  let values: unknown;
  try {
    values = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(values)) return [];
  return values.flatMap((value) => {
    const event = value as Partial<LogEvent>;
    return typeof event?.type === "string" && typeof event.sequence === "number"
      ? [{ ...event, data: (event.data ?? {}) as Record<string, unknown> } as LogEvent]
      : [];
  });
}
