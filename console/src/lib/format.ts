/** Display helpers: durations, times, numbers. */

export function seconds(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(digits)} s`;
}

export function clock(time: string | null | undefined): string {
  if (!time) return "–";
  const date = new Date(time);
  return Number.isNaN(date.getTime()) ? "–" : date.toLocaleTimeString([], { hour12: false });
}

export function dateTime(time: string | null | undefined): string {
  if (!time) return "–";
  const date = new Date(time);
  return Number.isNaN(date.getTime())
    ? "–"
    : `${date.toLocaleDateString([], { month: "short", day: "numeric" })} ${date.toLocaleTimeString([], { hour12: false })}`;
}

export function count(value: number | null | undefined): string {
  return value === null || value === undefined ? "–" : value.toLocaleString();
}

/** A random id fragment for rooms and identities (not a secret). */
export function randomId(length = 8): string {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
}

const JWT = /\beyJ[\w-]+\.[\w-]+\.[\w-]+/g;
const API_KEY = /\btlk_[\w-]+/g;

/** `text` with access tokens (JWTs) and API keys replaced: LiveKit's client quotes the
 * token in its connection errors, and nothing secret is shown on screen. */
export function withoutSecrets(text: string): string {
  return text.replace(JWT, "[token]").replace(API_KEY, "[API key]");
}
