/** "Erase conversation" for admin keys: a confirmation dialog that says what erasing
 * does, an optional reason for the audit trail, and the API's answer or its refusal. */
import { type FormEvent, useEffect, useRef, useState } from "react";
import type { Erasure } from "../api/client";
import { useAuth } from "../auth";
import { eraseFailure } from "../lib/erasure";
import { Alert } from "./Alert";

const REASON_MAX = 500;

export function EraseAction({ sessionId, onErased }: { sessionId: string; onErased: (erasure: Erasure) => void }) {
  const { api } = useAuth();
  const dialog = useRef<HTMLDialogElement>(null);
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const element = dialog.current;
    if (!element) return;
    if (open && !element.open) element.showModal();
    if (!open && element.open) element.close();
  }, [open]);

  const close = () => {
    if (busy) return;
    setOpen(false);
    setError(null);
  };

  const erase = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const erasure = await api.eraseSession(sessionId, reason.trim() || null);
      setOpen(false);
      setReason("");
      onErased(erasure);
    } catch (failure) {
      setError(eraseFailure(failure));
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <button type="button" className="danger-outline" onClick={() => setOpen(true)}>
        Erase conversation…
      </button>
      <dialog
        ref={dialog}
        className="erase-dialog"
        aria-labelledby="erase-title"
        aria-describedby="erase-what"
        onCancel={(event) => {
          event.preventDefault();
          close();
        }}
      >
        <form onSubmit={erase}>
          <h2 id="erase-title">Erase this conversation?</h2>
          <div id="erase-what">
            <p>
              <strong>This cannot be undone.</strong>
            </p>
            <ul>
              <li>
                The session’s data key is destroyed: every copy of what was said (in the event log, the analytics store,
                derived topics, dead letters and spools) becomes unreadable for good.
              </li>
              <li>Its transcript and participants are deleted from the read models; compacted topics get tombstones.</li>
              <li>What remains: times, counts, latency and models, and a record of this erasure (who asked, when, why).</li>
            </ul>
          </div>
          <label htmlFor="erase-reason">Reason (optional)</label>
          <input
            id="erase-reason"
            value={reason}
            maxLength={REASON_MAX}
            placeholder="e.g. ticket PRIV-1234"
            aria-describedby="erase-reason-hint"
            onChange={(event) => setReason(event.target.value)}
            disabled={busy}
          />
          <p id="erase-reason-hint" className="hint">
            Kept with the erasure for the audit trail. Do not write personal data here.
          </p>
          <Alert>{error}</Alert>
          <div className="dialog-actions">
            <button type="button" className="secondary" onClick={close} disabled={busy}>
              Cancel
            </button>
            <button type="submit" className="danger" disabled={busy}>
              {busy ? "Erasing…" : "Erase conversation"}
            </button>
          </div>
        </form>
      </dialog>
    </>
  );
}
