/** A turn's latency waterfall: one bar per stage, offset from the end of the user's speech. */
import type { Waterfall as WaterfallData } from "../lib/timeline";
import { seconds } from "../lib/format";

export function Waterfall({ data, scale }: { data: WaterfallData; scale: number }) {
  const span = Math.max(scale, data.span, 0.001);
  return (
    <figure className="waterfall" aria-label="Latency waterfall">
      {data.stages.map((stage) => (
        <div className="wf-row" key={stage.key} data-stage={stage.key}>
          <span className="wf-label">{stage.label}</span>
          <span className="wf-track">
            <span
              className={`wf-bar wf-${stage.key}`}
              style={{ left: `${(stage.start / span) * 100}%`, width: `${Math.max((stage.duration / span) * 100, 0.5)}%` }}
            />
          </span>
          <span className="wf-value">{seconds(stage.duration)}</span>
        </div>
      ))}
    </figure>
  );
}
