/** The session list: filters (room, agent, status, start time), keyset pages, a live
 * badge for open sessions and an "Erased" one for erased sessions; the first page
 * refreshes itself while any session is open. */
import { type FormEvent, useCallback, useEffect, useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { ApiError, type SessionPage, type SessionFilters } from "../api/client";
import { useAuth } from "../auth";
import { dateTime, seconds } from "../lib/format";
import { Alert } from "../components/Alert";
import { ErasedBadge } from "../components/ErasedBadge";

const REFRESH_MS = 5000;

function toIso(local: string): string | undefined {
  if (!local) return undefined;
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

export function SessionsPage() {
  const { api } = useAuth();
  const [params, setParams] = useSearchParams();
  const filters: SessionFilters = {
    room: params.get("room") ?? undefined,
    agent: params.get("agent") ?? undefined,
    status: params.get("status") ?? undefined,
    started_from: toIso(params.get("from") ?? ""),
    started_before: toIso(params.get("before") ?? ""),
  };
  const cursor = params.get("cursor");
  const [page, setPage] = useState<SessionPage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const key = params.toString();

  const load = useCallback(() => {
    api
      .sessions(filters, cursor)
      .then((result) => {
        setPage(result);
        setError(null);
      })
      .catch((failure) => setError(failure instanceof ApiError ? failure.message : String(failure)));
    // `key` stands for the filters and cursor: they are read from the URL it is made of
  }, [api, key]);

  useEffect(load, [load]);
  const anyLive = !!page?.items.some((s) => s.status === "active");
  useEffect(() => {
    if (!anyLive || cursor) return;
    const timer = setInterval(load, REFRESH_MS);
    return () => clearInterval(timer);
  }, [anyLive, cursor, load]);

  const applyFilters = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const next = new URLSearchParams();
    for (const name of ["room", "agent", "status", "from", "before"]) {
      const value = String(form.get(name) ?? "").trim();
      if (value) next.set(name, value);
    }
    setParams(next);
  };

  const nextPage = () => {
    if (!page?.next_cursor) return;
    const next = new URLSearchParams(params);
    next.set("cursor", page.next_cursor);
    setParams(next);
  };

  return (
    <section aria-labelledby="sessions-title">
      <h1 id="sessions-title">Sessions</h1>
      <form className="filters card" onSubmit={applyFilters} key={key}>
        <label>
          Room
          <input name="room" defaultValue={params.get("room") ?? ""} placeholder="any" />
        </label>
        <label>
          Agent
          <input name="agent" defaultValue={params.get("agent") ?? ""} placeholder="any" />
        </label>
        <label>
          Status
          <select name="status" defaultValue={params.get("status") ?? ""}>
            <option value="">any</option>
            <option value="active">active</option>
            <option value="closed">closed</option>
            <option value="failed">failed</option>
          </select>
        </label>
        <label>
          Started from
          <input name="from" type="datetime-local" defaultValue={params.get("from") ?? ""} />
        </label>
        <label>
          Started before
          <input name="before" type="datetime-local" defaultValue={params.get("before") ?? ""} />
        </label>
        <button type="submit">Apply</button>
        {key && (
          <button type="button" className="secondary" onClick={() => setParams(new URLSearchParams())}>
            Clear
          </button>
        )}
      </form>
      <Alert>{error}</Alert>
      {!page && !error && <p role="status" className="muted">Loading…</p>}
      {page && page.items.length === 0 && <p className="muted">No session matches.</p>}
      {page && page.items.length > 0 && (
        <table className="sessions">
          <thead>
            <tr>
              <th scope="col">Started</th>
              <th scope="col">Room</th>
              <th scope="col">Agent</th>
              <th scope="col">Status</th>
              <th scope="col">Turns (user / agent)</th>
              <th scope="col">Tools</th>
              <th scope="col">Interruptions</th>
              <th scope="col">Errors</th>
              <th scope="col">Duration</th>
            </tr>
          </thead>
          <tbody>
            {page.items.map((s) => (
              <tr key={s.session_id} className={s.erasure ? "erased-row" : undefined}>
                <td>
                  <Link to={`/sessions/${encodeURIComponent(s.session_id)}`}>{dateTime(s.started_at)}</Link>
                </td>
                <td>{s.room ?? "–"}</td>
                <td>{s.agent_name ?? "–"}</td>
                <td>
                  {s.status === "active" ? (
                    <span className="badge live">live</span>
                  ) : (
                    <span className={`badge ${s.status}`}>{s.status}</span>
                  )}
                  {s.erasure && <ErasedBadge erasure={s.erasure} />}
                </td>
                <td>
                  {s.user_turns} / {s.assistant_turns}
                </td>
                <td>{s.tool_calls}</td>
                <td>{s.interruptions}</td>
                <td>{s.errors}</td>
                <td>
                  {s.ended_at
                    ? seconds((Date.parse(s.ended_at) - Date.parse(s.started_at)) / 1000, 1)
                    : "–"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div className="pager">
        {cursor && (
          <button type="button" className="secondary" onClick={() => window.history.back()}>
            Previous page
          </button>
        )}
        {page?.next_cursor && (
          <button type="button" onClick={nextPage}>
            Next page
          </button>
        )}
      </div>
    </section>
  );
}
