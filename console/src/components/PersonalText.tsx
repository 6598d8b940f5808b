/** A personal text as the API gave it: `[erased]`, muted, once its session's key is gone. */
import { isErasedText } from "../lib/erasure";

export function PersonalText({ text }: { text: string | null | undefined }) {
  if (isErasedText(text)) return <span className="erased-text">[erased]</span>;
  return <>{text ?? ""}</>;
}
