import { describe, expect, it } from "vitest";
import {
  applyFrames,
  clearGap,
  initialState,
  parseFrame,
  skipGap,
  type Frame,
  type MessageItem,
  type RequestItem,
  type ToolItem,
} from "./reducer";

const RUN = "0190aaaa-0000-7000-8000-000000000001";

/** A run's events as the gateway would send them: seq 1.. with cursors `c<seq>`. */
function frames(...events: [string, Record<string, unknown>][]): Frame[] {
  return events.map(([type, data], i) => ({
    kind: "event",
    id: `c${i + 1}`,
    event: { runId: RUN, seq: i + 1, time: `2026-01-01T00:00:${String(i).padStart(2, "0")}Z`, type, data },
  }));
}

const lifecycle: [string, Record<string, unknown>][] = [
  ["run.queued", { provider: "scripted" }],
  ["run.claimed", { workerId: "w1", attempt: 1 }],
  ["run.dispatched", { executorId: "e1", timeoutMs: 1000 }],
  ["run.started", { provider: "scripted", workspace: "/tmp/w" }],
];

describe("the stream reducer", () => {
  it("assembles streamed message deltas into one message, the completed text winning", () => {
    const all = frames(
      ...lifecycle,
      ["message.delta", { messageId: "m1", text: "Hel" }],
      ["message.delta", { messageId: "m1", text: "lo **wor" }],
      ["message.delta", { messageId: "m1", text: "ld**" }],
    );
    let state = applyFrames(initialState(RUN), all);
    const messages = state.items.filter((i) => i.kind === "message") as MessageItem[];
    expect(messages).toHaveLength(1);
    expect(messages[0].text).toBe("Hello **world**");
    expect(messages[0].done).toBe(false);
    expect(state.status).toBe("running");
    expect(state.lastSeq).toBe(7);
    expect(state.lastId).toBe("c7");

    state = applyFrames(state, [
      { kind: "event", id: "c8", event: { runId: RUN, seq: 8, time: "", type: "message.completed", data: { messageId: "m1", text: "Hello, world." } } },
    ]);
    const [done] = state.items.filter((i) => i.kind === "message") as MessageItem[];
    expect(done.text).toBe("Hello, world.");
    expect(done.done).toBe(true);
    expect(done.events).toBe(4);
  });

  it("drops events it already applied and counts them", () => {
    const all = frames(...lifecycle, ["message.delta", { messageId: "m1", text: "a" }], ["message.delta", { messageId: "m1", text: "b" }]);
    let state = applyFrames(initialState(RUN), all.slice(0, 5));
    // A reconnect that resumed too early repeats events 3..6.
    state = applyFrames(state, all.slice(2));
    expect(state.duplicates).toBe(3);
    expect(state.frames).toHaveLength(6);
    expect(state.frames.map((f) => (f.kind === "event" ? f.event.seq : 0))).toEqual([1, 2, 3, 4, 5, 6]);
    const [message] = state.items.filter((i) => i.kind === "message") as MessageItem[];
    expect(message.text).toBe("ab");
  });

  it("stops at a gap and resumes once the missing events arrive", () => {
    const all = frames(...lifecycle, ["message.delta", { messageId: "m1", text: "a" }], ["message.delta", { messageId: "m1", text: "b" }]);
    let state = applyFrames(initialState(RUN), [all[0], all[1], all[3], all[4]]);
    expect(state.gap).toEqual({ expected: 3, got: 4 });
    expect(state.lastSeq).toBe(2);
    expect(state.lastId).toBe("c2");
    // Nothing is applied while the gap stands.
    expect(applyFrames(state, [all[2]]).lastSeq).toBe(2);
    // The stream is reopened from lastId: events 3.. arrive in order.
    state = applyFrames(clearGap(state), all.slice(2));
    expect(state.gap).toBeNull();
    expect(state.lastSeq).toBe(6);
    expect(state.duplicates).toBe(0);
  });

  it("can give up on events that never arrive, saying so", () => {
    const all = frames(...lifecycle, ["message.delta", { messageId: "m1", text: "a" }]);
    let state = applyFrames(initialState(RUN), [all[0], all[1], all[3]]);
    expect(state.gap).toEqual({ expected: 3, got: 4 });
    state = skipGap(state);
    expect(state.gap).toBeNull();
    expect(state.items.at(-1)).toMatchObject({ kind: "unknown", type: "unreadable", data: { expected: 3, got: 4 } });
    state = applyFrames(state, all.slice(3));
    expect(state.lastSeq).toBe(5);
    expect(state.gap).toBeNull();
  });

  it("moves past history the server no longer has when it says so", () => {
    const all = frames(...lifecycle, ["message.delta", { messageId: "m1", text: "a" }], ["message.delta", { messageId: "m1", text: "b" }]);
    const state = applyFrames(initialState(RUN), [
      { kind: "reset", expectedSeq: 1, firstAvailableSeq: 5 },
      all[4],
      all[5],
    ]);
    expect(state.gap).toBeNull();
    expect(state.lastSeq).toBe(6);
    expect(state.items[0]).toMatchObject({ kind: "reset", expectedSeq: 1, firstAvailableSeq: 5 });
    // A repeated reset is ignored.
    expect(applyFrames(state, [{ kind: "reset", expectedSeq: 1, firstAvailableSeq: 5 }]).items).toBe(state.items);
  });

  it("follows a tool call from start to output to completion", () => {
    const state = applyFrames(
      initialState(RUN),
      frames(
        ...lifecycle,
        ["tool.started", { callId: "t1", name: "shell", input: { command: "ls" } }],
        ["tool.output", { callId: "t1", output: "a.txt\n" }],
        ["tool.output", { callId: "t1", output: "b.txt\n" }],
        ["tool.completed", { callId: "t1", status: "succeeded", exitCode: 0 }],
        ["file.changed", { path: "a.txt", change: "modified", diff: "+x" }],
      ),
    );
    const tool = state.items.find((i) => i.kind === "tool") as ToolItem;
    expect(tool).toMatchObject({ name: "shell", input: { command: "ls" }, output: "a.txt\nb.txt\n", status: "succeeded", exitCode: 0 });
    expect(state.items.at(-1)).toMatchObject({ kind: "file", path: "a.txt", change: "modified", diff: "+x" });
  });

  it("tracks pending human-loop requests and the run's status", () => {
    let state = applyFrames(
      initialState(RUN),
      frames(
        ...lifecycle,
        ["human_loop.requested", { requestId: "h1", kind: "command", prompt: "Run rm?", details: { command: "rm x" } }],
        ["human_loop.requested", { requestId: "h2", kind: "permission", prompt: "Use the web?" }],
      ),
    );
    expect(state.status).toBe("waiting_for_human");
    expect(state.pending).toEqual(["h1", "h2"]);
    state = applyFrames(state, [
      { kind: "event", id: "c7", event: { runId: RUN, seq: 7, time: "", type: "human_loop.resolved", data: { requestId: "h1", decision: "approve", resolvedBy: "human" } } },
    ]);
    expect(state.pending).toEqual(["h2"]);
    expect(state.status).toBe("waiting_for_human");
    state = applyFrames(state, [
      { kind: "event", id: "c8", event: { runId: RUN, seq: 8, time: "", type: "human_loop.resolved", data: { requestId: "h2", decision: "deny", resolvedBy: "timeout" } } },
    ]);
    expect(state.pending).toEqual([]);
    expect(state.status).toBe("running");
    const requests = state.items.filter((i) => i.kind === "request") as RequestItem[];
    expect(requests.map((r) => r.resolution?.decision)).toEqual(["approve", "deny"]);
    expect(requests[0].details).toEqual({ command: "rm x" });
  });

  it("ends with the failure reason and its evidence", () => {
    const state = applyFrames(
      initialState(RUN),
      frames(...lifecycle, [
        "run.completed",
        { status: "failed", reason: "auth_invalid", detail: "401 from the model", evidence: { stderrTail: ["boom"], rawLines: ["{\"status\":401}"], exitCode: 1 } },
      ]),
    );
    expect(state.status).toBe("failed");
    expect(state.completed).toMatchObject({ reason: "auth_invalid", detail: "401 from the model" });
    expect(state.completed?.evidence?.stderrTail).toEqual(["boom"]);
  });

  it("keeps events of types it does not know", () => {
    const state = applyFrames(initialState(RUN), frames(["run.queued", {}], ["sandbox.snapshot", { id: 3 }]));
    expect(state.items.at(-1)).toMatchObject({ kind: "unknown", type: "sandbox.snapshot", data: { id: 3 } });
    expect(state.lastSeq).toBe(2);
  });

  it("sums usage", () => {
    const state = applyFrames(
      initialState(RUN),
      frames(["usage", { inputTokens: 10, outputTokens: 2 }], ["usage", { inputTokens: 5, outputTokens: 1, cachedInputTokens: 4 }]),
    );
    expect(state.usage).toEqual({ inputTokens: 15, outputTokens: 3, cachedInputTokens: 4 });
  });

  it("never changes the state it was given", () => {
    const all = frames(...lifecycle, ["message.delta", { messageId: "m1", text: "a" }], ["tool.started", { callId: "t1", name: "x" }]);
    const before = applyFrames(initialState(RUN), all.slice(0, 5));
    const snapshot = JSON.stringify({ ...before, index: null });
    const items = before.items;
    const after = applyFrames(before, [
      ...all.slice(5),
      { kind: "event", id: "c7", event: { runId: RUN, seq: 7, time: "", type: "message.delta", data: { messageId: "m1", text: "b" } } },
    ]);
    expect(JSON.stringify({ ...before, index: null })).toBe(snapshot);
    expect(before.items).toBe(items);
    expect(before.index.tools.has("t1")).toBe(false);
    expect(after.index.tools.has("t1")).toBe(true);
    // Unchanged items keep their identity (React skips them).
    expect(after.items[0]).toBe(before.items[0]);
    expect(after.items[4]).not.toBe(before.items[4]);
  });

  it("gives the same result however the frames are batched", () => {
    const all = frames(
      ...lifecycle,
      ["reasoning.delta", { text: "thinking " }],
      ["reasoning.delta", { text: "more" }],
      ["message.delta", { messageId: "m1", text: "x" }],
      ["tool.started", { callId: "t1", name: "shell" }],
      ["tool.output", { callId: "t1", output: "o" }],
      ["tool.completed", { callId: "t1", status: "failed", exitCode: 2 }],
      ["message.delta", { messageId: "m1", text: "y" }],
      ["run.completed", { status: "succeeded" }],
    );
    const whole = applyFrames(initialState(RUN), all);
    for (let size = 1; size <= all.length; size++) {
      let state = initialState(RUN);
      for (let i = 0; i < all.length; i += size) state = applyFrames(state, all.slice(i, i + size));
      expect({ ...state, index: null }).toEqual({ ...whole, index: null });
    }
    expect(whole.items.filter((i) => i.kind === "reasoning")).toHaveLength(1);
  });

  it("applies a 10,000-event run in batches quickly, each event once", () => {
    const many: [string, Record<string, unknown>][] = [...lifecycle];
    for (let i = 0; many.length < 10_000; i++) {
      many.push(["tool.started", { callId: `t${i}`, name: "shell", input: { i } }]);
      many.push(["tool.output", { callId: `t${i}`, output: `line ${i}\n` }]);
      many.push(["tool.completed", { callId: `t${i}`, status: "succeeded", exitCode: 0 }]);
    }
    const all = frames(...many.slice(0, 10_000));
    const started = performance.now();
    let state = initialState(RUN);
    for (let i = 0; i < all.length; i += 64) state = applyFrames(state, all.slice(i, i + 64));
    const took = performance.now() - started;
    expect(state.lastSeq).toBe(10_000);
    expect(state.frames).toHaveLength(10_000);
    expect(new Set(state.frames.map((f) => (f.kind === "event" ? f.id : ""))).size).toBe(10_000);
    expect(state.items.filter((i) => i.kind === "tool")).toHaveLength(3332);
    // Generous for a loaded CI machine; quadratic work would take far longer.
    expect(took).toBeLessThan(2000);
  });
});

describe("parseFrame", () => {
  it("reads events and resets, and refuses what is neither", () => {
    expect(parseFrame("message.delta", "c1", JSON.stringify({ runId: RUN, seq: 1, time: "", type: "message.delta", data: {} }))).toMatchObject({
      kind: "event",
      id: "c1",
    });
    expect(parseFrame("stream.reset", "", JSON.stringify({ expectedSeq: 1, firstAvailableSeq: 3 }))).toEqual({
      kind: "reset",
      expectedSeq: 1,
      firstAvailableSeq: 3,
    });
    expect(parseFrame("message.delta", "c1", "{not json")).toBeNull();
    expect(parseFrame("message.delta", "", JSON.stringify({ seq: 1, type: "x" }))).toBeNull();
    expect(parseFrame("stream.reset", "", JSON.stringify({}))).toBeNull();
  });
});
