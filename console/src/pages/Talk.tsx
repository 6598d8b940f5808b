/** Talk to the agent: a LiveKit call from the browser with a microphone level meter, the
 * agent's audio and state, live captions of both sides (LiveKit's transcription
 * streams), typed text on `lk.chat`, hang up, and then the session's timeline. */
import "@livekit/components-styles";
import {
  BarVisualizer,
  LiveKitRoom,
  RoomAudioRenderer,
  StartAudio,
  useChat,
  useLocalParticipant,
  useRoomContext,
  useTrackVolume,
  useTranscriptions,
  useVoiceAssistant,
} from "@livekit/components-react";
import type { LocalAudioTrack } from "livekit-client";
import { type FormEvent, useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { type Api, ApiError, type TokenGrant } from "../api/client";
import { useAuth } from "../auth";
import { randomId } from "../lib/format";
import { Alert } from "../components/Alert";

type Phase = { kind: "idle" } | { kind: "starting" } | { kind: "call"; grant: TokenGrant } | { kind: "ended"; room: string };

export default function TalkPage() {
  const { api } = useAuth();
  const [phase, setPhase] = useState<Phase>({ kind: "idle" });
  const [error, setError] = useState<string | null>(null);

  const start = async () => {
    setError(null);
    setPhase({ kind: "starting" });
    try {
      const grant = await api.token({ room: `console-${randomId()}`, identity: `web-${randomId(6)}`, name: "Console user" });
      setPhase({ kind: "call", grant });
    } catch (failure) {
      setError(failure instanceof ApiError ? failure.message : String(failure));
      setPhase({ kind: "idle" });
    }
  };

  return (
    <section aria-labelledby="talk-title" className="talk">
      <h1 id="talk-title">Talk to the agent</h1>
      <Alert>{error}</Alert>
      {(phase.kind === "idle" || phase.kind === "starting") && (
        <div className="card">
          <p>Start a voice call with the agent. Your browser will ask for the microphone.</p>
          <button type="button" onClick={() => void start()} disabled={phase.kind === "starting"}>
            {phase.kind === "starting" ? "Starting…" : "Start call"}
          </button>
        </div>
      )}
      {phase.kind === "call" && (
        <LiveKitRoom
          serverUrl={phase.grant.livekit_url}
          token={phase.grant.token}
          connect
          audio
          video={false}
          onDisconnected={() => setPhase({ kind: "ended", room: phase.grant.room })}
          onError={(failure) => setError(`the call failed: ${failure.message}`)}
          className="call"
        >
          <RoomAudioRenderer />
          <StartAudio label="Allow the agent's audio" className="start-audio" />
          <Call grant={phase.grant} />
        </LiveKitRoom>
      )}
      {phase.kind === "ended" && (
        <div className="card">
          <p>The call has ended.</p>
          <SessionLink api={api} room={phase.room} />
          <button type="button" onClick={() => void start()}>
            Start another call
          </button>
        </div>
      )}
    </section>
  );
}

/** The session recorded for `room`, once the read models have it. */
function SessionLink({ api, room }: { api: Api; room: string }) {
  const [sessionId, setSessionId] = useState<string | null>(null);
  useEffect(() => {
    let stopped = false;
    let timer = 0;
    const look = async () => {
      try {
        const page = await api.sessions({ room }, null, 1);
        if (page.items.length) {
          if (!stopped) setSessionId(page.items[0].session_id);
          return;
        }
      } catch {
        // tried again below
      }
      if (!stopped) timer = window.setTimeout(() => void look(), 1000);
    };
    void look();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [api, room]);
  return sessionId ? (
    <p>
      <Link to={`/sessions/${encodeURIComponent(sessionId)}`} className="session-link">
        Open this session&apos;s timeline
      </Link>
    </p>
  ) : (
    <p className="muted" role="status">
      Waiting for the session to be recorded…
    </p>
  );
}

interface CaptionLine {
  id: string;
  at: number;
  text: string;
  mine: boolean;
  typed: boolean;
}

/** Both sides' transcriptions and the text typed in this call, in time order. */
function captionLines(
  transcriptions: ReturnType<typeof useTranscriptions>,
  typed: ReturnType<typeof useChat>["chatMessages"],
  me: string,
): CaptionLine[] {
  const lines: CaptionLine[] = transcriptions.map((t) => ({
    id: t.streamInfo.id, at: t.streamInfo.timestamp, text: t.text,
    mine: t.participantInfo.identity === me, typed: false,
  }));
  for (const message of typed) {
    if (message.from?.identity === me) lines.push({ id: `chat-${message.id}`, at: message.timestamp, text: message.message, mine: true, typed: true });
  }
  return lines.sort((a, b) => a.at - b.at);
}

function Call({ grant }: { grant: TokenGrant }) {
  const { api } = useAuth();
  const room = useRoomContext();
  const { state, audioTrack } = useVoiceAssistant();
  const { localParticipant, microphoneTrack } = useLocalParticipant();
  const micLevel = useTrackVolume(microphoneTrack?.track as LocalAudioTrack | undefined);
  const transcriptions = useTranscriptions();
  const { send, isSending, chatMessages } = useChat();
  const [text, setText] = useState("");
  const [sendError, setSendError] = useState<string | null>(null);
  const canType = grant.can_publish_data !== false;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const message = text.trim();
    if (!message) return;
    setSendError(null);
    try {
      await send(message);
      setText("");
    } catch (failure) {
      setSendError(`the text was not sent: ${String(failure)}`);
    }
  };

  return (
    <div className="call-grid">
      <div className="card agent-panel">
        <h2>Agent</h2>
        <p className={`agent-state state-${state}`} aria-live="polite" data-testid="agent-state">
          {state}
        </p>
        <BarVisualizer state={state} track={audioTrack} barCount={7} className="agent-bars" />
        <h2>Your microphone</h2>
        <div className="meter" role="meter" aria-label="Microphone level" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(micLevel * 100)}>
          <span style={{ width: `${Math.min(100, Math.round(micLevel * 300))}%` }} />
        </div>
        <p className="muted">
          Room <span className="mono">{grant.room}</span>
        </p>
        <SessionLink api={api} room={grant.room} />
        <button type="button" className="danger" onClick={() => void room.disconnect()}>
          Hang up
        </button>
      </div>
      <div className="card captions-panel">
        <h2>Captions</h2>
        <ol className="captions" aria-live="polite" data-testid="captions">
          {captionLines(transcriptions, chatMessages, localParticipant.identity).map((line) => (
            <li key={line.id} className={line.mine ? "caption user" : "caption agent"}>
              <span className="who-label">{line.mine ? (line.typed ? "You (typed)" : "You") : "Agent"}</span> {line.text}
            </li>
          ))}
        </ol>
        <form className="chat" onSubmit={(event) => void submit(event)}>
          <label htmlFor="chat-text">Type to the agent</label>
          <div className="chat-row">
            <input
              id="chat-text"
              value={text}
              onChange={(event) => setText(event.target.value)}
              disabled={!canType}
              placeholder={canType ? "Type a message" : "Typing is not allowed"}
            />
            <button type="submit" disabled={!canType || isSending || !text.trim()}>
              Send
            </button>
          </div>
          {!canType && (
            <Alert>
              This deployment&apos;s tokens do not allow sending data, so the agent would never receive typed text
              (TURNLOG_TOKEN_PUBLISH_DATA is off). Use your voice.
            </Alert>
          )}
          <Alert>{sendError}</Alert>
        </form>
      </div>
    </div>
  );
}
