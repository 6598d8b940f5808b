/** The console's shell: login gate, navigation, and one lazily loaded module per page
 * (the voice client and the charts load only on the pages that use them). */
import { lazy, Suspense } from "react";
import { Navigate, NavLink, Route, Routes } from "react-router-dom";
import { AuthGate, useAuth } from "./auth";
import { SessionsPage } from "./pages/Sessions";

const TalkPage = lazy(() => import("./pages/Talk"));
const TimelinePage = lazy(() => import("./pages/Timeline"));
const AnalyticsPage = lazy(() => import("./pages/Analytics"));

export function App() {
  return (
    <AuthGate>
      <Shell />
    </AuthGate>
  );
}

function Shell() {
  const { session, logout } = useAuth();
  return (
    <>
      <header className="topbar">
        <span className="brand">Turnlog</span>
        <nav aria-label="Main">
          <NavLink to="/talk">Talk</NavLink>
          <NavLink to="/sessions">Sessions</NavLink>
          <NavLink to="/analytics">Analytics</NavLink>
        </nav>
        <span className="muted who">key “{session.key_name}”</span>
        <button type="button" className="secondary" onClick={() => void logout()}>
          Sign out
        </button>
      </header>
      <main className="page">
        <Suspense fallback={<p role="status" className="muted">Loading…</p>}>
          <Routes>
            <Route path="/" element={<Navigate to="/sessions" replace />} />
            <Route path="/talk" element={<TalkPage />} />
            <Route path="/sessions" element={<SessionsPage />} />
            <Route path="/sessions/:sessionId" element={<TimelinePage />} />
            <Route path="/analytics" element={<AnalyticsPage />} />
            <Route path="*" element={<NotFound />} />
          </Routes>
        </Suspense>
      </main>
    </>
  );
}

function NotFound() {
  return (
    <section>
      <h1>Not found</h1>
      <p>
        This page does not exist. <NavLink to="/sessions">See the sessions</NavLink>.
      </p>
    </section>
  );
}
