import { useEffect, useMemo, useState, type FormEvent } from "react";
import { ApiError, post } from "../api";
import { canAct, ErrorNote, providerLabel } from "../components/common";
import { navigate } from "../router";
import { useApi } from "../useApi";
import type { AppView, ProviderList, Role, StartRunResponse } from "../types";

/** Until `/api/providers` answers: the platform's own default. */
const FALLBACK_PROVIDER = "codex-app-server";

export function StartRun({ role, initialApp }: { role: Role; initialApp: string | null }) {
  const apps = useApi<{ apps: AppView[] }>("/api/apps");
  const providers = useApi<ProviderList>("/api/providers");
  const [appId, setAppId] = useState(initialApp ?? "");
  const [profile, setProfile] = useState("");
  const [provider, setProvider] = useState("");
  const [model, setModel] = useState("");
  const [prompt, setPrompt] = useState("");
  const [options, setOptions] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const app = apps.data?.apps.find((a) => a.appId === appId);
  const profiles = app ? Object.keys(app.executionProfiles) : [];
  const defaults = useMemo(() => {
    const fromProfile = app && profile ? app.executionProfiles[profile] : undefined;
    return {
      provider:
        fromProfile?.provider ??
        app?.runtimeDefaults.provider ??
        providers.data?.defaultProvider ??
        FALLBACK_PROVIDER,
      model: fromProfile?.model ?? app?.runtimeDefaults.model ?? "",
    };
  }, [app, profile, providers.data?.defaultProvider]);

  // The provider follows the app's (and profile's) default until the user picks one.
  const [providerTouched, setProviderTouched] = useState(false);
  useEffect(() => {
    if (!providerTouched) setProvider(defaults.provider);
  }, [defaults.provider, providerTouched]);
  useEffect(() => {
    if (profile && !profiles.includes(profile)) setProfile("");
  }, [profiles, profile]);

  if (!canAct(role)) {
    return (
      <main id="main">
        <h1>Start a run</h1>
        <p className="notice">Viewers can follow runs but not start them.</p>
      </main>
    );
  }

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    let providerOptions: Record<string, unknown> | undefined;
    if (options.trim()) {
      try {
        const parsed = JSON.parse(options);
        if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
        providerOptions = parsed;
      } catch {
        setError("Provider options must be a JSON object, e.g. {\"timeoutMs\": 60000}.");
        return;
      }
    }
    setBusy(true);
    try {
      const started = await post<StartRunResponse>(
        "/api/runs/start",
        {
          appId: appId || undefined,
          executionProfile: profile || undefined,
          provider: provider || undefined,
          model: model.trim() || undefined,
          prompt,
          providerOptions,
        },
        // A retried submission (a slow answer, a double click) starts one run.
        { "idempotency-key": crypto.randomUUID() },
      );
      navigate(`/runs/${started.runId}`);
    } catch (e) {
      setError(e instanceof ApiError ? `${e.message} (${e.code})` : String(e));
      setBusy(false);
    }
  };

  const providerList = providers.data?.providers ?? [];
  const names = providerList.map((p) => p.name);
  if (provider && !names.includes(provider)) names.push(provider);

  return (
    <main id="main">
      <h1>Start a run</h1>
      <ErrorNote error={apps.error}>Apps could not be loaded.</ErrorNote>
      <form className="start-form" onSubmit={submit}>
        <div className="field">
          <label htmlFor="app">App</label>
          <select id="app" value={appId} onChange={(e) => setAppId(e.target.value)}>
            <option value="">No app</option>
            {apps.data?.apps.map((a) => (
              <option key={a.appId} value={a.appId}>
                {a.name && a.name !== a.appId ? `${a.name} (${a.appId})` : a.appId}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="profile">Execution profile</label>
          <select id="profile" value={profile} onChange={(e) => setProfile(e.target.value)} disabled={profiles.length === 0}>
            <option value="">{profiles.length === 0 ? "None for this app" : "The app's defaults"}</option>
            {profiles.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="provider">Provider</label>
          <select
            id="provider"
            value={provider}
            onChange={(e) => {
              setProviderTouched(true);
              setProvider(e.target.value);
            }}
            aria-describedby="provider-help"
          >
            {names.map((name) => {
              const view = providerList.find((p) => p.name === name);
              return (
                <option key={name} value={name}>
                  {providerLabel(view, name)}
                  {view && !view.installed ? " — not installed" : ""}
                </option>
              );
            })}
          </select>
          <p id="provider-help" className="hint">
            Default: the app's or profile's provider, else the platform's (
            {providers.data?.defaultProvider ?? FALLBACK_PROVIDER}).
          </p>
        </div>
        <div className="field">
          <label htmlFor="model">Model</label>
          <input id="model" value={model} onChange={(e) => setModel(e.target.value)} placeholder={defaults.model || "the provider's default"} />
        </div>
        <div className="field wide">
          <label htmlFor="prompt">Prompt</label>
          <textarea id="prompt" value={prompt} onChange={(e) => setPrompt(e.target.value)} rows={6} required />
        </div>
        <details className="field wide">
          <summary>Provider options (JSON)</summary>
          <label htmlFor="options" className="visually-hidden">
            Provider options (JSON)
          </label>
          <textarea
            id="options"
            value={options}
            onChange={(e) => setOptions(e.target.value)}
            rows={5}
            spellCheck={false}
            placeholder='{"timeoutMs": 600000}'
          />
        </details>
        {error ? (
          <p className="error wide" role="alert">
            {error}
          </p>
        ) : null}
        <div className="wide">
          <button type="submit" className="primary" disabled={busy || prompt.trim() === ""}>
            {busy ? "Starting…" : "Start run"}
          </button>
        </div>
      </form>
    </main>
  );
}
