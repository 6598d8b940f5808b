/** Login: the API key is exchanged once for an HttpOnly session cookie; what the console
 * keeps is the session's CSRF token and scopes, in React state only. */
import { createContext, type FormEvent, type ReactNode, useCallback, useContext, useEffect, useMemo, useState } from "react";
import { type Api, ApiError, apiFor, type AuthSession, currentSession, login } from "./api/client";
import { Alert } from "./components/Alert";

interface AuthState {
  session: AuthSession;
  api: Api;
  logout: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function useAuth(): AuthState {
  const state = useContext(AuthContext);
  if (!state) throw new Error("useAuth outside <AuthGate>");
  return state;
}

export function AuthGate({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<AuthSession | null>(null);
  const [checking, setChecking] = useState(true);

  useEffect(() => {
    currentSession()
      .then(setSession)
      .catch(() => setSession(null))
      .finally(() => setChecking(false));
  }, []);

  const state = useMemo<AuthState | null>(() => {
    if (!session) return null;
    const api = apiFor(session);
    return {
      session,
      api,
      logout: async () => {
        await api.logout().catch(() => undefined);
        setSession(null);
      },
    };
  }, [session]);

  if (checking) return <p className="muted center" role="status">Loading…</p>;
  if (!state) return <LoginPage onLogin={setSession} />;
  return <AuthContext.Provider value={state}>{children}</AuthContext.Provider>;
}

function LoginPage({ onLogin }: { onLogin: (session: AuthSession) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = useCallback(
    async (event: FormEvent) => {
      event.preventDefault();
      setBusy(true);
      setError(null);
      try {
        onLogin(await login(key.trim()));
      } catch (failure) {
        setError(failure instanceof ApiError ? failure.message : String(failure));
      } finally {
        setBusy(false);
        setKey("");
      }
    },
    [key, onLogin],
  );

  return (
    <main className="login">
      <form onSubmit={submit} className="card login-card" aria-labelledby="login-title">
        <h1 id="login-title">Turnlog console</h1>
        <p className="muted">
          Sign in with an API key with the <code>read</code> scope (and <code>tokens</code> to talk to the
          agent). <code>make up</code> prints where its key is kept; <code>python -m turnlog.api keys create</code> makes
          more.
        </p>
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autoComplete="off"
          placeholder="tlk_…"
          value={key}
          onChange={(event) => setKey(event.target.value)}
          required
        />
        <Alert>{error}</Alert>
        <button type="submit" disabled={busy || !key.trim()}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
