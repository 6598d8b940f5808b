/** One turn of the timeline: the user's words (with the interim transcripts before them),
 * the agent's answer, tools, interruptions, errors and the latency waterfall. */
import { memo } from "react";
import { isErasedText } from "../lib/erasure";
import { clock, seconds } from "../lib/format";
import { interimChains, type Turn } from "../lib/timeline";
import { PersonalText } from "./PersonalText";
import { Waterfall } from "./Waterfall";

function ToolArguments({ text }: { text: string }) {
  if (isErasedText(text)) return <PersonalText text={text} />;
  let shown = text;
  try {
    shown = JSON.stringify(JSON.parse(text));
  } catch {
    shown = text;
  }
  return <code className="tool-args">{shown}</code>;
}

export const TurnRow = memo(function TurnRow({ turn, scale }: { turn: Turn; scale: number }) {
  const userText = turn.userMessages.map((m) => m.text).join(" ");
  const chains = interimChains(turn.transcripts);
  const interims = turn.transcripts.filter((t) => !t.final).length;
  const pending = !userText && turn.transcripts.length ? turn.transcripts[turn.transcripts.length - 1].text : "";
  return (
    <article className="turn card" aria-label={`Turn ${turn.index}`} data-turn={turn.id}>
      <header className="turn-head">
        <span className="turn-index">Turn {turn.index}</span>
        <span className="muted">{clock(turn.startedAt)}</span>
        {turn.interrupted && <span className="badge warn">interrupted</span>}
        {turn.falseInterruptions > 0 && <span className="badge">false interruption ×{turn.falseInterruptions}</span>}
        {turn.errors.length > 0 && <span className="badge failed">{turn.errors.length} error(s)</span>}
        <span className="muted right">
          events {turn.firstSequence}–{turn.lastSequence}
        </span>
      </header>
      <div className="turn-body">
        <div className="turn-talk">
          {(userText || pending) && (
            <div className="said user">
              <span className="who-label">User</span>
              <p>{userText ? <PersonalText text={userText} /> : <em className="muted"><PersonalText text={pending} /> …</em>}</p>
              {turn.transcripts.length > 0 && (
                <details>
                  <summary>
                    {interims} interim transcript{interims === 1 ? "" : "s"}
                  </summary>
                  <ol className="interims">
                    {chains.flat().map((step) => (
                      <li key={step.sequence} className={step.final ? "final" : ""}>
                        <span className="muted">+{step.atMs} ms</span> <PersonalText text={step.text} />
                        {step.final && <span className="badge">final</span>}
                      </li>
                    ))}
                  </ol>
                </details>
              )}
            </div>
          )}
          {turn.tools.map((tool) => (
            <div className={`tool ${tool.is_error ? "tool-error" : ""}`} key={tool.call_id}>
              <span className="who-label">Tool</span>
              <p>
                <strong>{tool.name}</strong>(<ToolArguments text={tool.arguments} />) → <code><PersonalText text={tool.output} /></code>
                {tool.duration != null && <span className="muted"> {seconds(tool.duration)}</span>}
                {tool.is_error && <span className="badge failed">error</span>}
              </p>
            </div>
          ))}
          {turn.agentMessages.map((message) => (
            <div className="said agent" key={message.sequence}>
              <span className="who-label">Agent</span>
              <p>
                <PersonalText text={message.text} />
                {message.interrupted && <span className="badge warn">cut short</span>}
              </p>
            </div>
          ))}
          {turn.errors.map((error, i) => (
            <div className="said error-row" key={i} role="note">
              <span className="who-label">Error</span>
              <p>
                {error.source}
                {error.provider ? ` (${error.provider})` : ""}: <PersonalText text={error.message} />
                {error.recoverable ? " (recovered)" : ""}
              </p>
            </div>
          ))}
        </div>
        <div className="turn-latency">
          {turn.waterfall ? <Waterfall data={turn.waterfall} scale={scale} /> : <p className="muted">no latency measured</p>}
        </div>
      </div>
    </article>
  );
});
