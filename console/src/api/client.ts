/**
 * The console's one way to the API: same-origin fetches that carry the session cookie
 * (HttpOnly: the console never sees the API key after login) and, on writes, the CSRF
 * token the login returned. Errors become `ApiError` with the API's reason code.
 */
import type { ErasureStep as ErasureStepRecord, Scope as ErasureScope } from "../generated/turnlog.erasure.completed.v1";

export interface AuthSession {
  key_name: string;
  scopes: string[];
  csrf_token: string;
  expires_at: string;
}

/** What one store did for an erasure (the API always gives the count). */
export type ErasureStep = Required<ErasureStepRecord>;

/** An erasure: what was asked, by whom, and what each store did (never personal data). */
export interface Erasure {
  erasure_id: string;
  scope: ErasureScope;
  /** `pending`: keys destroyed and read models purged; the Kafka tombstones and the proof
   * record are not written yet (it completes on its own). */
  status: "completed" | "pending";
  /** The session had been erased before: this is that erasure. */
  already_erased: boolean;
  /** The API key's name, `cli:<user>` or `retention`. */
  requested_by: string;
  requested_at: string;
  completed_at: string | null;
  reason: string | null;
  /** SHA-256 of the participant identity, for an erasure by participant. */
  subject_digest: string | null;
  session_ids: string[];
  steps: ErasureStep[];
}

export interface SessionSummary {
  session_id: string;
  room: string | null;
  agent_name: string | null;
  status: "active" | "closed" | "failed" | string;
  close_reason: string | null;
  started_at: string;
  ended_at: string | null;
  last_event_at: string | null;
  participants: string[];
  user_turns: number;
  assistant_turns: number;
  interruptions: number;
  tool_calls: number;
  errors: number;
  /** Set once the session is erased: its transcript and participants are gone. */
  erasure: Erasure | null;
}

export interface SessionPage {
  items: SessionSummary[];
  next_cursor: string | null;
}

export interface SessionDetail extends SessionSummary {
  duration_s: number | null;
  event_count: number;
  last_sequence: number;
  llm_prompt_tokens: number | null;
  llm_completion_tokens: number | null;
  tts_characters: number | null;
  stt_audio_s: number | null;
  tts_audio_s: number | null;
  models: Record<string, string | null>;
  latency: {
    measured_turns: number;
    e2e_p50_s: number | null;
    e2e_p95_s: number | null;
    llm_ttft_mean_s: number | null;
    tts_ttfb_mean_s: number | null;
  };
}

export interface TokenGrant {
  token: string;
  livekit_url: string;
  room: string;
  identity: string;
  expires_at: string;
  /** Whether the token lets the client send data (typed text on `lk.chat`). */
  can_publish_data?: boolean;
}

export interface LatencyStat {
  stage: string;
  provider: string;
  model: string;
  samples: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface UsageStat {
  kind: string;
  provider: string;
  model: string;
  requests: number;
  input_tokens: number;
  cached_input_tokens: number;
  output_tokens: number;
  characters: number;
  audio_seconds: number;
}

export interface OverviewMinute {
  minute: string;
  sessions_started: number;
  sessions_closed: number;
  sessions_failed: number;
  turns: number;
  interrupted_turns: number;
  errors: number;
  interruption_rate: number | null;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

async function request<T>(path: string, init: RequestInit & { csrf?: string } = {}): Promise<T> {
  const headers = new Headers(init.headers);
  headers.set("Accept", "application/json");
  if (init.body !== undefined) headers.set("Content-Type", "application/json");
  if (init.csrf) headers.set("X-CSRF-Token", init.csrf);
  let response: Response;
  try {
    response = await fetch(path, { ...init, headers, credentials: "same-origin" });
  } catch (error) {
    throw new ApiError(0, "network", `the API cannot be reached (${String(error)})`);
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const problem = (body ?? {}) as { error?: string; message?: string; field?: string };
    throw new ApiError(
      response.status,
      problem.error ?? `http_${response.status}`,
      problem.message ?? `${response.status} ${response.statusText}`,
      problem.field ?? null,
    );
  }
  return body as T;
}

function query(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export function login(apiKey: string): Promise<AuthSession> {
  return request("/v1/auth/login", { method: "POST", body: JSON.stringify({ api_key: apiKey }) });
}

export function currentSession(): Promise<AuthSession> {
  return request("/v1/auth/session");
}

export interface SessionFilters {
  room?: string;
  agent?: string;
  status?: string;
  started_from?: string;
  started_before?: string;
}

/** Calls that need the logged-in session (writes carry its CSRF token). */
export function apiFor(auth: AuthSession) {
  const csrf = auth.csrf_token;
  return {
    logout: () => request<void>("/v1/auth/logout", { method: "POST", csrf }),
    sessions: (filters: SessionFilters, cursor: string | null, limit = 50) =>
      request<SessionPage>(`/v1/sessions${query({ ...filters, cursor, limit })}`),
    session: (id: string) => request<SessionDetail>(`/v1/sessions/${encodeURIComponent(id)}`),
    /** Erases the session everywhere (scope `admin`): 200 completed, 202 pending. */
    eraseSession: (id: string, reason: string | null) =>
      request<Erasure>(`/v1/sessions/${encodeURIComponent(id)}${query({ reason })}`, { method: "DELETE", csrf }),
    token: (body: { room: string; identity: string; name?: string }) =>
      request<TokenGrant>("/v1/tokens", { method: "POST", body: JSON.stringify(body), csrf }),
    latency: (start: string, end: string) =>
      request<{ stats: LatencyStat[] }>(`/v1/analytics/latency${query({ start, end })}`),
    usage: (start: string, end: string) =>
      request<{ usage: UsageStat[] }>(`/v1/analytics/usage${query({ start, end })}`),
    overview: (start: string, end: string) =>
      request<{ minutes: OverviewMinute[] }>(`/v1/analytics/overview${query({ start, end })}`),
  };
}

export type Api = ReturnType<typeof apiFor>;

/** The live stream of a session's events: history after `after` (in batches: JSON arrays
 * in `history` messages), then live, one message per event (SSE). */
export function liveUrl(sessionId: string, after = 0): string {
  return `/v1/sessions/${encodeURIComponent(sessionId)}/live${query({ history: "batched", after: after || null })}`;
}
