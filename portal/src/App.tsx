import { useEffect, useState } from "react";
import { currentSession, onSignedOut, signOut, ApiError } from "./api";
import { canAct } from "./components/common";
import { Link, match, useLocation } from "./router";
import { applyTheme, storedTheme, type ThemeChoice } from "./theme";
import type { SessionView } from "./types";
import { AppDetail, Apps } from "./views/Apps";
import { Providers } from "./views/Providers";
import { Queue } from "./views/Queue";
import { RunView } from "./views/RunView";
import { Runs } from "./views/Runs";
import { SignIn } from "./views/SignIn";
import { StartRun } from "./views/StartRun";

export function App() {
  // undefined: still asking the gateway; null: not signed in.
  const [session, setSession] = useState<SessionView | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  const [failure, setFailure] = useState<string | null>(null);

  useEffect(() => {
    currentSession()
      .then(setSession)
      .catch((e: unknown) => setFailure(e instanceof ApiError ? e.message : String(e)));
    return onSignedOut((message) => {
      setSession(null);
      setNotice(message);
    });
  }, []);

  if (failure) {
    return (
      <main id="main" className="sign-in">
        <h1>Switchyard</h1>
        <p className="error" role="alert">
          The gateway did not answer: {failure}
        </p>
        <button type="button" onClick={() => window.location.reload()}>
          Try again
        </button>
      </main>
    );
  }
  if (session === undefined) {
    return (
      <main id="main" className="sign-in">
        <p role="status">Loading…</p>
      </main>
    );
  }
  if (session === null) {
    return (
      <SignIn
        message={notice}
        onSignedIn={(s) => {
          setNotice(null);
          setSession(s);
        }}
      />
    );
  }
  return (
    <Shell
      session={session}
      onSignOut={async () => {
        try {
          await signOut();
        } finally {
          setNotice("You signed out.");
          setSession(null);
        }
      }}
    />
  );
}

const NAV: { to: string; label: string; actorOnly?: boolean }[] = [
  { to: "/runs", label: "Runs" },
  { to: "/start", label: "Start a run", actorOnly: true },
  { to: "/queue", label: "Queue" },
  { to: "/apps", label: "Apps" },
  { to: "/providers", label: "Providers" },
];

function Shell({ session, onSignOut }: { session: SessionView; onSignOut: () => void }) {
  const location = useLocation();
  const role = session.principal.role;
  const [theme, setTheme] = useState<ThemeChoice>(storedTheme);
  const nextTheme: Record<ThemeChoice, ThemeChoice> = { system: "light", light: "dark", dark: "system" };
  const active = (to: string) => location.path === to || (to === "/runs" && (location.path === "/" || location.path.startsWith("/runs/")));

  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link to="/runs" className="brand">
          Switchyard
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((item) => !item.actorOnly || canAct(role)).map((item) => (
              <li key={item.to}>
                <Link to={item.to} aria-current={active(item.to) ? "page" : undefined}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div className="account">
          <button
            type="button"
            className="ghost"
            onClick={() => {
              const next = nextTheme[theme];
              applyTheme(next);
              setTheme(next);
            }}
            aria-label={`Theme: ${theme}. Switch to ${nextTheme[theme]}`}
            title="Switch theme"
          >
            {theme === "dark" ? "◐ Dark" : theme === "light" ? "◑ Light" : "◒ System"}
          </button>
          <span className="principal" data-testid="principal">
            {session.principal.id === "admin" || session.principal.id === "anonymous" ? session.principal.id : "signed in"}{" "}
            <span className="badge">{role}</span>
          </span>
          {session.auth === "cookie" ? (
            <button type="button" className="ghost" onClick={onSignOut}>
              Sign out
            </button>
          ) : null}
        </div>
      </header>
      <Route path={location.path} session={session} location={location} />
    </>
  );
}

function Route({ path, session, location }: { path: string; session: SessionView; location: ReturnType<typeof useLocation> }) {
  const role = session.principal.role;
  let params: Record<string, string> | null;
  if (path === "/" || path === "/runs") return <Runs location={location} role={role} />;
  if ((params = match("/runs/:id", path))) return <RunView key={params.id} runId={params.id} role={role} />;
  if (path === "/start") return <StartRun role={role} initialApp={location.search.get("app")} />;
  if (path === "/queue") return <Queue />;
  if (path === "/providers") return <Providers />;
  if (path === "/apps") return <Apps />;
  if ((params = match("/apps/:id", path))) return <AppDetail appId={params.id} />;
  return (
    <main id="main">
      <h1>Not found</h1>
      <p>
        There is nothing at <code>{path}</code>. <Link to="/runs">See the runs.</Link>
      </p>
    </main>
  );
}
