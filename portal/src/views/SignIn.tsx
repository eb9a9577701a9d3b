import { useState, type FormEvent } from "react";
import { ApiError, signIn } from "../api";
import type { SessionView } from "../types";

/** Paste an API token once; the gateway answers with a session cookie. */
export function SignIn({ message, onSignedIn }: { message: string | null; onSignedIn: (session: SessionView) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const session = await signIn(token.trim());
      setToken("");
      onSignedIn(session);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" className="sign-in">
      <h1>Switchyard</h1>
      <form onSubmit={submit} aria-describedby="sign-in-help">
        <h2>Sign in</h2>
        {message ? (
          <p className="notice" role="status">
            {message}
          </p>
        ) : null}
        <p id="sign-in-help" className="muted">
          Paste an API token: the gateway's admin token (the quick start prints <code>dev-admin-token</code>) or a token an
          admin created for you. It is exchanged once for a session cookie and not kept by this page.
        </p>
        <label htmlFor="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          spellCheck={false}
          value={token}
          onChange={(e) => setToken(e.target.value)}
          required
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? "sign-in-error" : undefined}
        />
        {error ? (
          <p id="sign-in-error" className="error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" className="primary" disabled={busy || token.trim() === ""}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
