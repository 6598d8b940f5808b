/** A problem the person must see: announced to screen readers, nothing when empty. */
import type { ReactNode } from "react";

export function Alert({ children }: { children: ReactNode }) {
  if (children === null || children === undefined || children === false || children === "") return null;
  return (
    <p className="error" role="alert">
      {children}
    </p>
  );
}
