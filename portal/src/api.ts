// The gateway's API from the browser: same-origin fetches authenticated by the session
// cookie, with the session's CSRF token on every state-changing request.

import type { SessionView } from "./types";

/** An error answer of the API (`{"error":{"code","message"}}`) or a network failure. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let csrfToken: string | null = null;
const signedOutListeners = new Set<(message: string) => void>();

/** Remembers the session's CSRF token (from sign-in or GET /api/session). */
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

/** Called whenever the API answers 401: the session ended (expired, revoked, changed). */
export function onSignedOut(listener: (message: string) => void): () => void {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

/** Tells every listener the session ended (a 401 seen outside `api`, e.g. by a stream). */
export function reportSignedOut(message: string): void {
  for (const listener of signedOutListeners) listener(message);
}

const SAFE = new Set(["GET", "HEAD"]);

export async function api<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const sent: Record<string, string> = { accept: "application/json", ...headers };
  if (body !== undefined) sent["content-type"] = "application/json";
  if (!SAFE.has(method) && csrfToken) sent["x-switchyard-csrf"] = csrfToken;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "The gateway cannot be reached. Check your connection and try again.");
  }
  if (response.status === 204) return undefined as T;
  let payload: any = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const code = typeof payload?.error?.code === "string" ? payload.error.code : `http_${response.status}`;
    const message = typeof payload?.error?.message === "string" ? payload.error.message : `The gateway answered ${response.status}.`;
    const error = new ApiError(response.status, code, message);
    if (response.status === 401 && path !== "/api/session") reportSignedOut(message);
    throw error;
  }
  return payload as T;
}

export const get = <T>(path: string) => api<T>("GET", path);
export const post = <T>(path: string, body: unknown = {}, headers?: Record<string, string>) => api<T>("POST", path, body, headers);

/** Who the browser is signed in as; `null` when not signed in. */
export async function currentSession(): Promise<SessionView | null> {
  try {
    const session = await get<SessionView>("/api/session");
    setCsrfToken(session.csrfToken);
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

export async function signIn(token: string): Promise<SessionView> {
  const session = await api<SessionView>("POST", "/api/session", { token });
  setCsrfToken(session.csrfToken);
  return session;
}

export async function signOut(): Promise<void> {
  try {
    await api<void>("DELETE", "/api/session");
  } finally {
    setCsrfToken(null);
  }
}

/** A query string from the non-empty values of `params`. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
