/** A problem the person must see: announced to screen readers, nothing when empty.
 * Text is shown without the secrets a library may quote in its errors (tokens). */
import type { ReactNode } from "react";
import { withoutSecrets } from "../lib/format";

export function Alert({ children }: { children: ReactNode }) {
  if (children === null || children === undefined || children === false || children === "") return null;
  return (
    <p className="error" role="alert">
      {typeof children === "string" ? withoutSecrets(children) : children}
    </p>
  );
}
