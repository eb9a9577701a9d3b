// The run stream reducer: folds the gateway's provider-neutral run events (SSE frames
// of GET /api/runs/{id}/stream) into what the run view shows.
//
// It is pure: `applyFrames(state, frames)` returns a new state and leaves `state` as it
// was, so React can compare items by identity and re-render only the changed ones. A
// batch costs one copy of the item list whatever its size, which keeps a 10,000-event
// catch-up cheap.
//
// Exactly-once is enforced here, whatever the connection did: an event whose `seq` is
// not above the last applied one is a duplicate and is dropped (and counted); one
// whose `seq` skips ahead is a gap, and nothing after it is applied until the stream
// is reopened from `lastId` (the cursor of the last applied event). A `stream.reset`
// frame (the server says retention removed events) moves the expected `seq` forward
// on purpose and shows as an item.

import type { Evidence, RunStatus } from "../types";

export interface RunEvent {
  runId: string;
  seq: number;
  time: string;
  type: string;
  data: any;
}

/** One SSE frame: a run event with its cursor, or the server's reset notice. */
export type Frame =
  | { kind: "event"; id: string; event: RunEvent }
  | { kind: "reset"; expectedSeq: number; firstAvailableSeq: number };

interface ItemBase {
  /** Stable React key. */
  key: string;
  /** `seq` of the first event folded into the item. */
  seq: number;
  time: string;
}

export interface MessageItem extends ItemBase {
  kind: "message";
  messageId: string;
  text: string;
  done: boolean;
  /** Events folded into this message. */
  events: number;
}
export interface ReasoningItem extends ItemBase {
  kind: "reasoning";
  text: string;
}
export interface ToolItem extends ItemBase {
  kind: "tool";
  callId: string;
  name: string;
  input: unknown;
  output: string;
  status: "running" | "succeeded" | "failed" | "declined";
  exitCode: number | null;
}
export interface FileItem extends ItemBase {
  kind: "file";
  path: string;
  change: string;
  diff: string | null;
}
export interface RequestItem extends ItemBase {
  kind: "request";
  requestId: string;
  requestKind: string;
  prompt: string;
  details: unknown;
  resolution: null | { decision: string; resolvedBy: string; message: string | null };
}
export interface LifecycleItem extends ItemBase {
  kind: "lifecycle";
  type: string;
  text: string;
}
export interface UsageItem extends ItemBase {
  kind: "usage";
  inputTokens: number;
  outputTokens: number;
}
export interface DiagnosticItem extends ItemBase {
  kind: "diagnostic";
  level: string;
  message: string;
  raw: string | null;
}
export interface CompletedItem extends ItemBase {
  kind: "completed";
  status: string;
  reason: string | null;
  detail: string | null;
  evidence: Evidence | null;
}
export interface ResetItem extends ItemBase {
  kind: "reset";
  expectedSeq: number;
  firstAvailableSeq: number;
}
export interface UnknownItem extends ItemBase {
  kind: "unknown";
  type: string;
  data: unknown;
}

export type Item =
  | MessageItem
  | ReasoningItem
  | ToolItem
  | FileItem
  | RequestItem
  | LifecycleItem
  | UsageItem
  | DiagnosticItem
  | CompletedItem
  | ResetItem
  | UnknownItem;

export interface StreamState {
  runId: string;
  /** Every frame applied, in order: what the event log shows and the cache keeps. */
  frames: Frame[];
  /** `seq` of the last applied event (0 before the first). */
  lastSeq: number;
  /** Cursor of the last applied event: where a reconnect resumes. */
  lastId: string | null;
  items: Item[];
  status: RunStatus | null;
  completed: CompletedItem | null;
  usage: { inputTokens: number; outputTokens: number; cachedInputTokens: number };
  /** Request ids still waiting for a human, oldest first. */
  pending: string[];
  /** Events dropped because they were already applied. */
  duplicates: number;
  /** An event skipped ahead: nothing more is applied until a reconnect from `lastId`. */
  gap: null | { expected: number; got: number };
  /** Where lookups by id point into `items` (replaced, never mutated, once shared). */
  index: {
    messages: ReadonlyMap<string, number>;
    tools: ReadonlyMap<string, number>;
    requests: ReadonlyMap<string, number>;
  };
}

export function initialState(runId: string): StreamState {
  return {
    runId,
    frames: [],
    lastSeq: 0,
    lastId: null,
    items: [],
    status: null,
    completed: null,
    usage: { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 },
    pending: [],
    duplicates: 0,
    gap: null,
    index: { messages: new Map(), tools: new Map(), requests: new Map() },
  };
}

/** The state after a gap was dealt with (the stream reopens from `lastId`). */
export function clearGap(state: StreamState): StreamState {
  return state.gap ? { ...state, gap: null } : state;
}

/**
 * Gives up on the events of the current gap: they exist (the stream sends them again
 * after a reconnect) but never arrive, e.g. an event type newer than this portal, which
 * EventSource does not deliver. The view says so with an item, and goes on after them.
 */
export function skipGap(state: StreamState): StreamState {
  const gap = state.gap;
  if (!gap) return state;
  const item: UnknownItem = {
    kind: "unknown",
    key: `skipped-${gap.expected}`,
    seq: gap.expected,
    time: "",
    type: "unreadable",
    data: { note: `events ${gap.expected}–${gap.got - 1} could not be read by this portal`, expected: gap.expected, got: gap.got },
  };
  return { ...state, gap: null, lastSeq: gap.got - 1, items: [...state.items, item] };
}

/** Working copy for one batch: the item list and indexes are copied once, lazily. */
class Draft {
  readonly s: StreamState;
  private itemsCopied = false;
  private indexCopied = { messages: false, tools: false, requests: false };
  private readonly accepted: Frame[] = [];

  constructor(state: StreamState) {
    this.s = { ...state, index: { ...state.index }, usage: { ...state.usage } };
  }

  items(): Item[] {
    if (!this.itemsCopied) {
      this.s.items = this.s.items.slice();
      this.itemsCopied = true;
    }
    return this.s.items;
  }

  index(name: "messages" | "tools" | "requests"): Map<string, number> {
    if (!this.indexCopied[name]) {
      this.s.index[name] = new Map(this.s.index[name]);
      this.indexCopied[name] = true;
    }
    return this.s.index[name] as Map<string, number>;
  }

  push(item: Item, indexName?: "messages" | "tools" | "requests", id?: string): void {
    const items = this.items();
    items.push(item);
    if (indexName && id !== undefined) this.index(indexName).set(id, items.length - 1);
  }

  /** Replaces the item at `at` with `update(old)` (a new object). */
  replace<T extends Item>(at: number, update: (old: T) => T): void {
    const items = this.items();
    items[at] = update(items[at] as T);
  }

  accept(frame: Frame): void {
    this.accepted.push(frame);
  }

  finish(): StreamState {
    if (this.accepted.length > 0) this.s.frames = this.s.frames.concat(this.accepted);
    return this.s;
  }
}

/** Applies a batch of frames in order. */
export function applyFrames(state: StreamState, frames: readonly Frame[]): StreamState {
  if (frames.length === 0) return state;
  const draft = new Draft(state);
  for (const frame of frames) {
    if (draft.s.gap) break;
    if (frame.kind === "reset") {
      applyReset(draft, frame);
      continue;
    }
    const { event } = frame;
    if (event.seq <= draft.s.lastSeq) {
      draft.s.duplicates += 1;
      continue;
    }
    if (event.seq !== draft.s.lastSeq + 1) {
      draft.s.gap = { expected: draft.s.lastSeq + 1, got: event.seq };
      break;
    }
    applyEvent(draft, event);
    draft.s.lastSeq = event.seq;
    draft.s.lastId = frame.id;
    draft.accept(frame);
  }
  return draft.finish();
}

function applyReset(draft: Draft, frame: Extract<Frame, { kind: "reset" }>): void {
  // Only a reset that moves forward means anything; an older one is a repeat.
  if (frame.firstAvailableSeq <= draft.s.lastSeq + 1) return;
  draft.push({
    kind: "reset",
    key: `reset-${frame.firstAvailableSeq}`,
    seq: frame.firstAvailableSeq,
    time: "",
    expectedSeq: frame.expectedSeq,
    firstAvailableSeq: frame.firstAvailableSeq,
  });
  draft.s.lastSeq = frame.firstAvailableSeq - 1;
  draft.accept(frame);
}

const str = (value: unknown): string => (typeof value === "string" ? value : "");
const num = (value: unknown): number => (typeof value === "number" && Number.isFinite(value) ? value : 0);

function applyEvent(draft: Draft, event: RunEvent): void {
  const data = event.data && typeof event.data === "object" ? event.data : {};
  const base = { seq: event.seq, time: event.time };
  const s = draft.s;
  switch (event.type) {
    case "run.queued":
      s.status = "queued";
      lifecycle(draft, event, `Queued for ${str(data.provider) || "a provider"}${data.model ? ` (${data.model})` : ""}`);
      return;
    case "run.claimed":
      if (!isLater(s.status, "claimed")) s.status = "claimed";
      lifecycle(draft, event, `Claimed by ${str(data.workerId)}${num(data.attempt) > 1 ? ` (attempt ${num(data.attempt)})` : ""}`);
      return;
    case "run.dispatched":
      if (!isLater(s.status, "dispatched")) s.status = "dispatched";
      lifecycle(draft, event, `Dispatched to ${str(data.executorId)}`);
      return;
    case "run.started":
      s.status = s.pending.length > 0 ? "waiting_for_human" : "running";
      lifecycle(
        draft,
        event,
        `Started ${str(data.provider)}${data.model ? ` (${data.model})` : ""}${data.workspace ? ` in ${data.workspace}` : ""}`,
      );
      return;
    case "message.delta": {
      const id = str(data.messageId);
      const at = s.index.messages.get(id);
      if (at === undefined) {
        draft.push(
          { kind: "message", key: `m-${id}-${event.seq}`, ...base, messageId: id, text: str(data.text), done: false, events: 1 },
          "messages",
          id,
        );
      } else {
        draft.replace<MessageItem>(at, (m) => ({ ...m, text: m.text + str(data.text), events: m.events + 1 }));
      }
      return;
    }
    case "message.completed": {
      const id = str(data.messageId);
      const at = s.index.messages.get(id);
      if (at === undefined) {
        draft.push(
          { kind: "message", key: `m-${id}-${event.seq}`, ...base, messageId: id, text: str(data.text), done: true, events: 1 },
          "messages",
          id,
        );
      } else {
        // The completed text is authoritative (a provider may revise what it streamed).
        draft.replace<MessageItem>(at, (m) => ({ ...m, text: str(data.text), done: true, events: m.events + 1 }));
      }
      return;
    }
    case "reasoning.delta": {
      const items = s.items;
      const last = items[items.length - 1];
      if (last && last.kind === "reasoning") {
        draft.replace<ReasoningItem>(items.length - 1, (r) => ({ ...r, text: r.text + str(data.text) }));
      } else {
        draft.push({ kind: "reasoning", key: `r-${event.seq}`, ...base, text: str(data.text) });
      }
      return;
    }
    case "tool.started": {
      const id = str(data.callId);
      draft.push(
        {
          kind: "tool",
          key: `t-${id}-${event.seq}`,
          ...base,
          callId: id,
          name: str(data.name),
          input: data.input ?? null,
          output: "",
          status: "running",
          exitCode: null,
        },
        "tools",
        id,
      );
      return;
    }
    case "tool.output": {
      const at = s.index.tools.get(str(data.callId));
      if (at === undefined) return unknown(draft, event);
      draft.replace<ToolItem>(at, (t) => ({ ...t, output: t.output + str(data.output) }));
      return;
    }
    case "tool.completed": {
      const at = s.index.tools.get(str(data.callId));
      if (at === undefined) return unknown(draft, event);
      const status = ["succeeded", "failed", "declined"].includes(data.status) ? data.status : "failed";
      draft.replace<ToolItem>(at, (t) => ({
        ...t,
        status,
        exitCode: typeof data.exitCode === "number" ? data.exitCode : null,
      }));
      return;
    }
    case "file.changed":
      draft.push({
        kind: "file",
        key: `f-${event.seq}`,
        ...base,
        path: str(data.path),
        change: str(data.change),
        diff: typeof data.diff === "string" ? data.diff : null,
      });
      return;
    case "human_loop.requested": {
      const id = str(data.requestId);
      draft.push(
        {
          kind: "request",
          key: `h-${id}-${event.seq}`,
          ...base,
          requestId: id,
          requestKind: str(data.kind),
          prompt: str(data.prompt),
          details: data.details ?? null,
          resolution: null,
        },
        "requests",
        id,
      );
      s.pending = [...s.pending, id];
      if (!isTerminal(s.status)) s.status = "waiting_for_human";
      return;
    }
    case "human_loop.resolved": {
      const id = str(data.requestId);
      const at = s.index.requests.get(id);
      const resolution = {
        decision: str(data.decision),
        resolvedBy: str(data.resolvedBy),
        message: typeof data.message === "string" ? data.message : null,
      };
      if (at === undefined) {
        // Resolved without a request we saw (history trimmed): still show the answer.
        draft.push(
          { kind: "request", key: `h-${id}-${event.seq}`, ...base, requestId: id, requestKind: "", prompt: "", details: null, resolution },
          "requests",
          id,
        );
      } else {
        draft.replace<RequestItem>(at, (r) => ({ ...r, resolution }));
      }
      s.pending = s.pending.filter((p) => p !== id);
      if (s.status === "waiting_for_human" && s.pending.length === 0) s.status = "running";
      return;
    }
    case "usage":
      s.usage = {
        inputTokens: s.usage.inputTokens + num(data.inputTokens),
        outputTokens: s.usage.outputTokens + num(data.outputTokens),
        cachedInputTokens: s.usage.cachedInputTokens + num(data.cachedInputTokens),
      };
      draft.push({
        kind: "usage",
        key: `u-${event.seq}`,
        ...base,
        inputTokens: num(data.inputTokens),
        outputTokens: num(data.outputTokens),
      });
      return;
    case "diagnostic":
      draft.push({
        kind: "diagnostic",
        key: `d-${event.seq}`,
        ...base,
        level: str(data.level) || "info",
        message: str(data.message),
        raw: typeof data.raw === "string" ? data.raw : data.raw == null ? null : JSON.stringify(data.raw),
      });
      return;
    case "run.completed": {
      const item: CompletedItem = {
        kind: "completed",
        key: `c-${event.seq}`,
        ...base,
        status: str(data.status) || "failed",
        reason: typeof data.reason === "string" ? data.reason : null,
        detail: typeof data.detail === "string" ? data.detail : null,
        evidence: data.evidence && typeof data.evidence === "object" ? (data.evidence as Evidence) : null,
      };
      draft.push(item);
      s.completed = item;
      s.status = (["succeeded", "failed", "stopped", "timed_out"].includes(item.status) ? item.status : "failed") as RunStatus;
      s.pending = [];
      return;
    }
    default:
      unknown(draft, event);
  }
}

function lifecycle(draft: Draft, event: RunEvent, text: string): void {
  draft.push({ kind: "lifecycle", key: `l-${event.seq}`, seq: event.seq, time: event.time, type: event.type, text });
}

/** An event type this portal does not know (a newer server): shown raw, never lost. */
function unknown(draft: Draft, event: RunEvent): void {
  draft.push({ kind: "unknown", key: `x-${event.seq}`, seq: event.seq, time: event.time, type: event.type, data: event.data });
}

const ORDER: RunStatus[] = ["queued", "claimed", "dispatched", "running"];

/** Whether `status` is already past `next` in the start-up order (a re-claim is not news). */
function isLater(status: RunStatus | null, next: RunStatus): boolean {
  if (!status) return false;
  if (isTerminal(status) || status === "waiting_for_human") return true;
  return ORDER.indexOf(status) > ORDER.indexOf(next);
}

function isTerminal(status: RunStatus | null): boolean {
  return status === "succeeded" || status === "failed" || status === "stopped" || status === "timed_out";
}

/** Every event type the gateway sends (EventSource needs a listener per name). */
export const EVENT_TYPES = [
  "run.queued",
  "run.claimed",
  "run.dispatched",
  "run.started",
  "run.completed",
  "message.delta",
  "message.completed",
  "reasoning.delta",
  "tool.started",
  "tool.output",
  "tool.completed",
  "file.changed",
  "human_loop.requested",
  "human_loop.resolved",
  "usage",
  "diagnostic",
] as const;

/** The SSE event name of the server's "history is missing" notice. */
export const RESET_EVENT = "stream.reset";

/** Parses one SSE message into a frame; `null` for something that is not one. */
export function parseFrame(type: string, id: string, data: string): Frame | null {
  let json: any;
  try {
    json = JSON.parse(data);
  } catch {
    return null;
  }
  if (type === RESET_EVENT) {
    if (typeof json?.expectedSeq !== "number" || typeof json?.firstAvailableSeq !== "number") return null;
    return { kind: "reset", expectedSeq: json.expectedSeq, firstAvailableSeq: json.firstAvailableSeq };
  }
  if (!id || typeof json?.seq !== "number" || typeof json?.type !== "string") return null;
  return { kind: "event", id, event: json as RunEvent };
}
