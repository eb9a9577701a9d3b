import { ErrorNote, Loading } from "../components/common";
import { useApi } from "../useApi";
import type { ProviderView } from "../types";

export function Providers() {
  const { data, error } = useApi<{ providers: ProviderView[] }>("/api/providers", 5000);
  return (
    <main id="main">
      <h1>Providers</h1>
      <p className="muted">Which agent CLIs the live executors have installed, and whether they can find their credentials.</p>
      <ErrorNote error={error} />
      {!data && !error ? <Loading what="providers" /> : null}
      <ul className="cards">
        {data?.providers.map((p) => (
          <li key={p.name} className="card" data-provider={p.name}>
            <h2>{p.name}</h2>
            {p.aliases.length > 0 ? <p className="muted">Also accepted as: {p.aliases.map((a) => <code key={a}>{a}</code>)}</p> : null}
            <dl className="facts">
              <dt>Installed</dt>
              <dd>
                <span className={`badge ${p.installed ? "ok" : "warn"}`}>{p.installed ? "yes" : "no"}</span>
              </dd>
              <dt>Credentials</dt>
              <dd>
                {p.credentialsConfigured === null ? (
                  <span className="badge">unknown</span>
                ) : (
                  <span className={`badge ${p.credentialsConfigured ? "ok" : "warn"}`}>{p.credentialsConfigured ? "configured" : "missing"}</span>
                )}
              </dd>
              <dt>Executors</dt>
              <dd>
                {p.executors.length === 0
                  ? "none"
                  : p.executors.map((e) => (
                      <span key={e.executorId} className="executor">
                        <code>{e.executorId}</code>
                        {e.version ? ` ${e.version}` : ""}
                      </span>
                    ))}
              </dd>
            </dl>
          </li>
        ))}
      </ul>
    </main>
  );
}
