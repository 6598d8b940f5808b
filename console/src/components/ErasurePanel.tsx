/** The banner of an erased session: who asked, when, why, and what each store did. */
import type { Erasure } from "../api/client";
import { dateTime } from "../lib/format";
import { requesterLabel, scopeLabel, statusText, stepRows } from "../lib/erasure";

export function ErasurePanel({ erasure }: { erasure: Erasure }) {
  const rows = stepRows(erasure.steps);
  return (
    <section className="card erasure-panel" aria-labelledby="erasure-title" data-testid="erasure-panel">
      <header className="erasure-head">
        <h2 id="erasure-title">This conversation was erased</h2>
        <span className={`badge ${erasure.status === "completed" ? "done" : "warn"}`}>{erasure.status}</span>
      </header>
      <p className="erasure-lead">
        Its data key is destroyed: what was said, in every copy, can no longer be read. Times, counts and latency remain.
      </p>
      <dl className="facts erasure-facts">
        <div><dt>Requested by</dt><dd>{requesterLabel(erasure.requested_by)}</dd></div>
        <div><dt>When</dt><dd>{dateTime(erasure.requested_at)}</dd></div>
        <div><dt>Scope</dt><dd>{scopeLabel(erasure)}</dd></div>
        <div><dt>Reason</dt><dd>{erasure.reason || <span className="muted">none given</span>}</dd></div>
        <div className="wide"><dt>Status</dt><dd>{statusText(erasure)}{erasure.completed_at && ` at ${dateTime(erasure.completed_at)}`}</dd></div>
        {erasure.subject_digest && (
          <div className="wide"><dt>Participant (SHA-256 of the identity)</dt><dd className="mono digest">{erasure.subject_digest}</dd></div>
        )}
      </dl>
      {erasure.already_erased && <p className="muted">It had been erased before: this is that erasure.</p>}
      {rows.length > 0 ? (
        <table className="compact erasure-steps">
          <caption>What each store did</caption>
          <thead>
            <tr>
              <th scope="col">Store</th>
              <th scope="col">Action</th>
              <th scope="col" className="num">Count</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.key}>
                <td>{row.store}</td>
                <td>{row.action}</td>
                <td className="num">{row.count}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">No store has reported a step yet.</p>
      )}
      <p className="muted mono erasure-id">erasure {erasure.erasure_id}</p>
    </section>
  );
}
