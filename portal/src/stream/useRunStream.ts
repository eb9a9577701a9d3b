// Follows a run's event stream with EventSource (the session cookie authenticates it)
// and never loses or repeats an event:
//
// * every reconnect — after a dropped connection, a gateway restart, a gap, or a page
//   reload (frames restored from this tab's cache) — opens a new EventSource with
//   `?cursor=<cursor of the last applied event>`. The browser's own reconnect is not
//   used: it would resend the original `?cursor=`, which the server prefers over
//   Last-Event-ID;
// * the reducer drops anything at or below the last applied `seq` and stops at a gap;
// * when reconnecting keeps failing, a plain fetch of the stream URL tells why (the
//   session ended, the cursor is refused, the run is gone) instead of retrying forever.

import { useEffect, useState } from "react";
import { reportSignedOut } from "../api";
import { dropFrames, loadFrames, saveFrames } from "./cache";
import {
  applyFrames,
  clearGap,
  skipGap,
  EVENT_TYPES,
  initialState,
  parseFrame,
  RESET_EVENT,
  type Frame,
  type StreamState,
} from "./reducer";

export interface Connection {
  phase: "connecting" | "live" | "reconnecting" | "ended" | "failed";
  /** Reconnects since the view opened (not counting the first connection). */
  reconnects: number;
  /** `seq` the latest (re)connection resumed after; 0 = from the start. */
  resumedAfter: number;
  /** Frames restored from this tab's cache when the view opened. */
  fromCache: number;
  /** Why the stream stopped, when `phase` is `failed`. */
  message: string | null;
}

/** How long events are gathered before they are applied together (one render). */
const BATCH_MS = 40;
const MAX_RETRY_MS = 5000;

export function streamUrl(runId: string, cursor: string | null): string {
  const base = `/api/runs/${encodeURIComponent(runId)}/stream`;
  return cursor ? `${base}?cursor=${encodeURIComponent(cursor)}` : base;
}

type Verdict = "retry" | "signed_out" | "invalid_cursor" | "finished" | { failed: string };

/** What the stream URL answers to a plain request (EventSource only says "error"). */
async function diagnose(url: string): Promise<Verdict> {
  const controller = new AbortController();
  try {
    const response = await fetch(url, {
      headers: { accept: "text/event-stream" },
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    });
    if (response.status === 200) return "retry";
    if (response.status === 204) return "finished";
    if (response.status === 401) return "signed_out";
    const body = await response.json().catch(() => null);
    const code: string | undefined = body?.error?.code;
    const message: string = body?.error?.message ?? `the gateway answered ${response.status}`;
    if (code === "invalid_cursor") return "invalid_cursor";
    if (response.status >= 500 || response.status === 429) return "retry";
    return { failed: message };
  } catch {
    return "retry";
  } finally {
    controller.abort();
  }
}

export function useRunStream(runId: string): { state: StreamState; connection: Connection } {
  const [state, setState] = useState<StreamState>(() => initialState(runId));
  const [connection, setConnection] = useState<Connection>({
    phase: "connecting",
    reconnects: 0,
    resumedAfter: 0,
    fromCache: 0,
    message: null,
  });

  useEffect(() => {
    let closed = false;
    let source: EventSource | null = null;
    let queue: Frame[] = [];
    let flushTimer: number | null = null;
    let retryTimer: number | null = null;
    let failures = 0;
    let opened = 0;
    // `seq` of the last gap reopened for, to notice one that reading again does not fill.
    let lastGap: number | null = null;

    const cached = loadFrames(runId);
    let current = cached ? applyFrames(initialState(runId), cached) : initialState(runId);
    if (current.gap) {
      dropFrames(runId);
      current = initialState(runId);
    }
    let saved = cached && !current.gap ? current.frames.length : 0;
    setState(current);
    setConnection({
      phase: current.completed ? "ended" : "connecting",
      reconnects: 0,
      resumedAfter: current.lastSeq,
      fromCache: current.frames.length,
      message: null,
    });

    const update = (patch: Partial<Connection> | ((c: Connection) => Partial<Connection>)) => {
      if (!closed) setConnection((c) => ({ ...c, ...(typeof patch === "function" ? patch(c) : patch) }));
    };

    const close = () => {
      source?.close();
      source = null;
    };

    const flush = () => {
      if (flushTimer !== null) {
        window.clearTimeout(flushTimer);
        flushTimer = null;
      }
      if (queue.length === 0) return;
      const batch = queue;
      queue = [];
      current = applyFrames(current, batch);
      saved = saveFrames(runId, current.frames, saved);
      if (closed) return;
      setState(current);
      if (current.completed) {
        close();
        update({ phase: "ended" });
      } else if (current.gap) {
        if (lastGap === current.gap.expected) {
          // Reading again did not bring them: events this portal cannot receive.
          current = skipGap(current);
          setState(current);
          lastGap = null;
          // The frame after the gap was not applied: read on from the one before it.
        } else {
          // The server skipped events: read again from the last one applied.
          lastGap = current.gap.expected;
          current = clearGap(current);
        }
        close();
        open();
      }
    };

    const schedule = () => {
      if (flushTimer === null) flushTimer = window.setTimeout(flush, BATCH_MS);
    };

    const retry = async () => {
      retryTimer = null;
      if (closed) return;
      if (failures >= 2) {
        const verdict = await diagnose(streamUrl(runId, current.lastId));
        if (closed) return;
        if (verdict === "signed_out") {
          update({ phase: "failed", message: "Your session has ended. Sign in again to follow this run." });
          reportSignedOut("Your session has ended; sign in again.");
          return;
        }
        if (verdict === "finished") {
          update({ phase: "ended" });
          return;
        }
        if (verdict === "invalid_cursor") {
          // The gateway does not accept the cached position: read the run from its start.
          dropFrames(runId);
          current = initialState(runId);
          saved = 0;
          setState(current);
        } else if (typeof verdict === "object") {
          update({ phase: "failed", message: verdict.failed });
          return;
        }
      }
      open();
    };

    const scheduleRetry = (immediately = false) => {
      if (retryTimer !== null) window.clearTimeout(retryTimer);
      const backoff = Math.min(MAX_RETRY_MS, 500 * 2 ** Math.max(0, failures - 1));
      const delay = immediately ? 0 : backoff + Math.random() * 250;
      retryTimer = window.setTimeout(() => void retry(), delay);
    };

    function open() {
      if (closed || current.completed) return;
      const resumeAfter = current.lastSeq;
      const es = new EventSource(streamUrl(runId, current.lastId));
      source = es;
      const listener = (type: string) => (event: MessageEvent) => {
        if (source !== es) return;
        const frame = parseFrame(type, event.lastEventId, event.data);
        if (frame) {
          queue.push(frame);
          schedule();
        }
      };
      // EventSource dispatches named events only to listeners of that name: an event
      // type added to the server after this list reaches the portal only once listed
      // here (until then the reducer's gap check stops at it and says so).
      for (const type of EVENT_TYPES) es.addEventListener(type, listener(type) as EventListener);
      es.addEventListener(RESET_EVENT, listener(RESET_EVENT) as EventListener);
      es.addEventListener("message", listener("message") as EventListener);
      es.onopen = () => {
        if (source !== es) return;
        failures = 0;
        opened += 1;
        update((c) => ({
          phase: "live",
          reconnects: opened > 1 ? c.reconnects + 1 : c.reconnects,
          resumedAfter: resumeAfter,
          message: null,
        }));
      };
      es.onerror = () => {
        if (source !== es) return;
        close();
        flush();
        if (closed || current.completed) return;
        failures += 1;
        update({ phase: "reconnecting" });
        scheduleRetry();
      };
    }

    const online = () => {
      if (source === null && retryTimer !== null) scheduleRetry(true);
    };
    // A dropped network can leave the connection half-open for minutes with nothing to
    // tell (keep-alive comments are invisible to EventSource): when the browser says it
    // went offline, reconnect rather than wait on it.
    const offline = () => {
      if (source === null || current.completed) return;
      close();
      flush();
      failures += 1;
      update({ phase: "reconnecting" });
      scheduleRetry();
    };
    const hide = () => flush();
    window.addEventListener("online", online);
    window.addEventListener("offline", offline);
    window.addEventListener("pagehide", hide);
    if (!current.completed) open();

    return () => {
      flush();
      closed = true;
      close();
      if (flushTimer !== null) window.clearTimeout(flushTimer);
      if (retryTimer !== null) window.clearTimeout(retryTimer);
      window.removeEventListener("online", online);
      window.removeEventListener("offline", offline);
      window.removeEventListener("pagehide", hide);
    };
  }, [runId]);

  return { state, connection };
}
