/** The console's shell: login gate, navigation, and one lazily loaded module per page
 * (the voice client and the charts load only on the pages that use them). */
import { lazy, Suspense } from "react";
import { Navigate, NavLink, Route, Routes } from "react-router-dom";
import { prefetchSessionEvents } from "./api/live";
import { AuthGate, useAuth } from "./auth";
import { SessionsPage } from "./pages/Sessions";

const pages = {
  talk: () => import("./pages/Talk"),
  timeline: () => import("./pages/Timeline"),
  analytics: () => import("./pages/Analytics"),
};
// The page opened first starts loading now, alongside the sign-in check, not after it.
const first = window.location.pathname.split("/")[1];
if (first === "talk") void pages.talk();
else if (first === "sessions" && window.location.pathname.split("/")[2]) {
  void pages.timeline();
  prefetchSessionEvents(decodeURIComponent(window.location.pathname.split("/")[2]));
}
else if (first === "analytics") void pages.analytics();

const TalkPage = lazy(pages.talk);
const TimelinePage = lazy(pages.timeline);
const AnalyticsPage = lazy(pages.analytics);

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
