/** An event as recorded, as JSON, in a modal dialog. */
import { useEffect, useRef } from "react";
import type { LogEvent } from "../lib/events";

export function JsonDialog({ event, onClose }: { event: LogEvent | null; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (event && !dialog.open) dialog.showModal();
    if (!event && dialog.open) dialog.close();
  }, [event]);
  return (
    <dialog ref={ref} className="json-dialog" onClose={onClose} aria-labelledby="json-title">
      <header>
        <h2 id="json-title">{event ? `Event ${event.sequence}: ${event.type}` : "Event"}</h2>
        <button type="button" className="secondary" onClick={onClose}>
          Close
        </button>
      </header>
      <pre>{event ? JSON.stringify(event, null, 2) : ""}</pre>
    </dialog>
  );
}
