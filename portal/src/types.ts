// Wire types of the gateway's API, as the portal reads them (schemas/ has the full
// JSON Schemas; fields the portal does not use are left out).

export type Role = "admin" | "operator" | "developer" | "viewer";

export interface SessionView {
  principal: { id: string; role: Role; apps: string[] };
  auth: "cookie" | "bearer" | "anonymous";
  csrfToken: string | null;
  expiresAt: string | null;
}

export type RunStatus =
  | "queued"
  | "claimed"
  | "dispatched"
  | "running"
  | "waiting_for_human"
  | "succeeded"
  | "failed"
  | "stopped"
  | "timed_out";

export const RUN_STATUSES: RunStatus[] = [
  "queued",
  "claimed",
  "dispatched",
  "running",
  "waiting_for_human",
  "succeeded",
  "failed",
  "stopped",
  "timed_out",
];

export const TERMINAL: ReadonlySet<string> = new Set(["succeeded", "failed", "stopped", "timed_out"]);

export interface Evidence {
  stderrTail?: string[];
  rawLines?: string[];
  exitCode?: number;
}

export interface RunView {
  runId: string;
  conversationId: string;
  appId?: string;
  executionProfile?: string;
  provider: string;
  model?: string;
  status: RunStatus;
  statusDetail?: string;
  failureReason?: string;
  failureDetail?: string;
  evidence?: Evidence;
  executorId?: string;
  lastEventSeq: number;
  streamUrl: string;
  createdAt: string;
  startedAt?: string;
  completedAt?: string;
  waitingReason?: string;
  waitingDetail?: string;
}

export interface RuntimeDefaults {
  provider?: string;
  model?: string;
  credentialEnv?: string[];
  providerOptions?: Record<string, unknown>;
  timeoutMs?: number;
}

export interface AppView {
  appId: string;
  name: string;
  runtimeDefaults: RuntimeDefaults;
  executionProfiles: Record<string, RuntimeDefaults>;
  createdAt: string;
  updatedAt: string;
}

export interface ProviderView {
  name: string;
  aliases: string[];
  installed: boolean;
  executors: { executorId: string; version: string | null }[];
  credentialsConfigured: boolean | null;
}

/** `GET /api/providers`. */
export interface ProviderList {
  providers: ProviderView[];
  /** The provider a run gets when neither it, its profile nor its app names one. */
  defaultProvider: string;
}

export interface RunQueueView {
  pending: number;
  inFlight: number;
  runs: RunView[];
}

export interface StartRunResponse {
  runId: string;
  conversationId: string;
  status: RunStatus;
  provider: string;
  model?: string;
  streamUrl: string;
}

export interface HumanLoopRequestView {
  requestId: string;
  kind: string;
  prompt: string;
  details: unknown;
  status: "pending" | "resolved";
}
