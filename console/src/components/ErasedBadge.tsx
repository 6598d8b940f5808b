/** The session list's mark of an erased session: "Erased" and when it was asked for. */
import type { Erasure } from "../api/client";
import { dateTime } from "../lib/format";
import { requesterLabel } from "../lib/erasure";

export function ErasedBadge({ erasure }: { erasure: Erasure }) {
  const when = dateTime(erasure.requested_at);
  const pending = erasure.status === "pending";
  return (
    <span
      className="erased-mark"
      title={`Erased ${when} by ${requesterLabel(erasure.requested_by)}${pending ? " (pending)" : ""}`}
    >
      <span className="badge erased">Erased</span>
      <span className="erased-when">
        erased {when}
        {pending && " · pending"}
      </span>
    </span>
  );
}
