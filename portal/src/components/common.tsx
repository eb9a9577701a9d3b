import type { ReactNode } from "react";
import type { ApiError } from "../api";
import type { ProviderView, Role } from "../types";

export function ErrorNote({ error, children }: { error: ApiError | null; children?: ReactNode }) {
  if (!error) return null;
  return (
    <p className="error" role="alert">
      {children ?? "Could not load this."} {error.message} <span className="muted">({error.code})</span>
    </p>
  );
}

export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge status-${status}`}>{status.replace(/_/g, " ")}</span>;
}

export function shortId(id: string): string {
  return id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

/** `codex-app-server (alias: codex-cli)`. */
export function providerLabel(provider: ProviderView | undefined, name: string): string {
  if (!provider || provider.aliases.length === 0) return name;
  return `${name} (alias: ${provider.aliases.join(", ")})`;
}

/** Whether a role may start, stop and answer runs. */
export function canAct(role: Role): boolean {
  return role !== "viewer";
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status">
      Loading {what}…
    </p>
  );
}
