/**
 * Erased sessions in the console: whether a session or a text is erased, and the words
 * that show an erasure (who asked, its scope, what each store did, why an erase failed).
 *
 * A session is erased as soon as it has an erasure, pending or completed: the keys are
 * destroyed and the read models purged in the request itself; only Kafka's part waits.
 */
import { ApiError, type Erasure, type ErasureStep, type SessionSummary } from "../api/client";
import { count } from "./format";

/** What a personal field reads once its session's key is destroyed. */
export const ERASED_TEXT = "[erased]";
const ONLY_ERASED = /^(?:\s*\[erased\])+\s*$/;

export function isErased(session: Pick<SessionSummary, "erasure"> | null | undefined): boolean {
  return !!session?.erasure;
}

/** Whether `text` says nothing but `[erased]` (a join of erased texts included). */
export function isErasedText(text: string | null | undefined): boolean {
  return typeof text === "string" && ONLY_ERASED.test(text);
}

/** Whether any string in `value` (an event's data) reads `[erased]`. */
export function hasErasedText(value: unknown): boolean {
  if (typeof value === "string") return isErasedText(value);
  if (Array.isArray(value)) return value.some(hasErasedText);
  if (value !== null && typeof value === "object") return Object.values(value).some(hasErasedText);
  return false;
}

/** Whether a key with `scopes` may erase (the API's `admin` scope). */
export function canErase(scopes: readonly string[]): boolean {
  return scopes.includes("admin");
}

export function scopeLabel(erasure: Pick<Erasure, "scope" | "session_ids">): string {
  switch (erasure.scope) {
    case "session":
      return "this session";
    case "participant": {
      const n = erasure.session_ids.length;
      return `a participant: every session they took part in (${n} session${n === 1 ? "" : "s"})`;
    }
    case "retention":
      return "the retention policy";
  }
}

/** Who asked, in words: an API key, an operator on the command line, or the retention job. */
export function requesterLabel(requestedBy: string): string {
  if (requestedBy === "retention") return "the retention policy";
  if (requestedBy.startsWith("cli:")) return `operator “${requestedBy.slice(4)}” (command line)`;
  return `API key “${requestedBy}”`;
}

const STORES: Record<string, string> = {
  key_store: "Key store",
  postgres: "PostgreSQL",
  clickhouse: "ClickHouse",
  kafka: "Kafka",
  gateway: "Agent gateway",
};

export interface StepRow {
  key: string;
  store: string;
  action: string;
  count: string;
}

/** The steps of an erasure as table rows, in the order they were done. */
export function stepRows(steps: readonly ErasureStep[]): StepRow[] {
  return steps.map((step, index) => ({
    key: `${index}-${step.store}`,
    store: STORES[step.store] ?? step.store,
    action: step.action,
    count: count(step.count),
  }));
}

export function statusText(erasure: Pick<Erasure, "status">): string {
  return erasure.status === "completed"
    ? "completed"
    : "pending: the Kafka tombstones and the proof record are not written yet; it completes on its own";
}

/** `detail` as it reads once `erasure` erased it: no participant is left. */
export function withErasure<T extends SessionSummary>(detail: T, erasure: Erasure): T {
  return { ...detail, erasure, participants: [] };
}

/** Why an erase request failed, for the person who asked. */
export function eraseFailure(error: unknown): string {
  if (!(error instanceof ApiError)) return `The erasure failed: ${String(error)}`;
  switch (error.status) {
    case 0:
      return "The API cannot be reached, so the erasure may not have been made. Check the connection, then reload the page to see the session's state.";
    case 401:
      return "Your sign-in has ended (401). Sign in again, then erase the conversation.";
    case 403:
      return error.code === "csrf_failed"
        ? "The console's sign-in is out of date (403). Sign out and in again, then retry."
        : "Your API key may not erase conversations (403): that needs the admin scope.";
    case 404:
      return "The API does not know this session (404): nothing was erased.";
    case 429:
      return "Too many requests with this key (429). Wait a moment, then retry.";
    default:
      return error.status >= 500
        ? `The API could not erase the conversation now (${error.status}): ${error.message}`
        : `The erasure was refused (${error.status}): ${error.message}`;
  }
}
