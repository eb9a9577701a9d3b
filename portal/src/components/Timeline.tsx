// The run's conversation: one row per timeline item (a whole streamed message, a tool
// call with its output, a file change, a request for approval …), and the raw event
// log, one row per event with its cursor.

import { memo, useState } from "react";
import { Markdown } from "../markdown";
import type { Frame, Item, RequestItem } from "../stream/reducer";
import { Time } from "../time";
import { describeReason } from "../reasons";
import { WindowedList } from "./WindowedList";

/** Output longer than this many lines is folded behind a "show all". */
const FOLD_LINES = 12;
const FOLD_CHARS = 1500;

export function Timeline({ items }: { items: readonly Item[] }) {
  return (
    <WindowedList
      items={items}
      itemKey={(item) => item.key}
      render={(item) => <TimelineItem item={item} />}
      label="Run conversation"
      className="timeline"
      testId="timeline"
      threshold={300}
      estimate={72}
    />
  );
}

const TimelineItem = memo(function TimelineItem({ item }: { item: Item }) {
  switch (item.kind) {
    case "message":
      return (
        <article className="item message" data-kind="message" aria-label="Assistant message">
          <Markdown text={item.text} />
          {item.done ? null : <span className="streaming" aria-label="still streaming">▍</span>}
        </article>
      );
    case "reasoning":
      return (
        <details className="item reasoning" data-kind="reasoning">
          <summary>Reasoning ({item.text.length.toLocaleString()} characters)</summary>
          <p className="reasoning-text">{item.text}</p>
        </details>
      );
    case "tool":
      return (
        <section className={`item tool tool-${item.status}`} data-kind="tool" aria-label={`Tool call ${item.name}`}>
          <header>
            <span className="tool-name">{item.name || "tool"}</span>
            <span className={`badge status-${item.status}`}>{item.status}</span>
            {item.exitCode !== null ? <span className="muted">exit {item.exitCode}</span> : null}
            <Time iso={item.time} style="clock" />
          </header>
          <details className="tool-input">
            <summary>Input</summary>
            <pre>{pretty(item.input)}</pre>
          </details>
          {item.output ? <Folded text={item.output} label="Output" /> : null}
        </section>
      );
    case "file":
      return (
        <section className="item file" data-kind="file" aria-label={`File ${item.change}: ${item.path}`}>
          <header>
            <span className={`badge change-${item.change}`}>{item.change}</span>
            <code className="file-path">{item.path}</code>
          </header>
          {item.diff ? (
            <details className="diff">
              <summary>Diff ({item.diff.split("\n").length} lines)</summary>
              <pre>
                {item.diff.split("\n").map((line, i) => (
                  <span key={i} className={line.startsWith("+") ? "diff-add" : line.startsWith("-") ? "diff-del" : line.startsWith("@@") ? "diff-hunk" : undefined}>
                    {line}
                    {"\n"}
                  </span>
                ))}
              </pre>
            </details>
          ) : null}
        </section>
      );
    case "request":
      return <RequestSummary item={item} />;
    case "lifecycle":
      return (
        <p className="item lifecycle" data-kind="lifecycle">
          <Time iso={item.time} style="clock" /> {item.text}
        </p>
      );
    case "usage":
      return (
        <p className="item lifecycle" data-kind="usage">
          Usage: {item.inputTokens.toLocaleString()} input, {item.outputTokens.toLocaleString()} output tokens
        </p>
      );
    case "diagnostic":
      return (
        <section className={`item diagnostic level-${item.level}`} data-kind="diagnostic">
          <span className="badge">{item.level}</span> {item.message}
          {item.raw ? <Folded text={item.raw} label="Raw" /> : null}
        </section>
      );
    case "completed":
      return (
        <section className={`item completed status-${item.status}`} data-kind="completed" aria-label={`Run ${item.status}`}>
          <strong>Run {item.status.replace("_", " ")}</strong>
          {item.reason ? (
            <span>
              {" "}
              — <code>{item.reason}</code> {describeReason(item.reason)}
            </span>
          ) : null}
          {item.detail ? <p className="detail">{item.detail}</p> : null}
        </section>
      );
    case "reset":
      return (
        <p className="item reset" role="note" data-kind="reset">
          Events {item.expectedSeq}–{item.firstAvailableSeq - 1} are no longer stored (retention); the run continues from event{" "}
          {item.firstAvailableSeq}.
        </p>
      );
    case "unknown":
      return (
        <section className="item unknown" data-kind="unknown">
          <code>{item.type}</code>
          <Folded text={pretty(item.data)} label="Data" />
        </section>
      );
  }
});

function RequestSummary({ item }: { item: RequestItem }) {
  const resolution = item.resolution;
  return (
    <section className={`item request ${resolution ? "resolved" : "pending"}`} data-kind="request" aria-label="Approval request">
      <header>
        <span className="badge">{item.requestKind || "request"}</span>
        <span>{item.prompt || "(request from before the stored history)"}</span>
      </header>
      {item.details ? <Details details={item.details} /> : null}
      <p className="resolution">
        {resolution
          ? `${resolution.decision === "approve" ? "Approved" : "Denied"}${resolution.resolvedBy && resolution.resolvedBy !== "human" ? ` (${resolution.resolvedBy.replace("_", " ")})` : ""}${resolution.message ? `: ${resolution.message}` : ""}`
          : "Waiting for a decision"}
      </p>
    </section>
  );
}

/** A request's details: a command or a diff stand out; the rest is JSON. */
export function Details({ details }: { details: unknown }) {
  if (!details || typeof details !== "object") return null;
  const d = details as Record<string, unknown>;
  const command = Array.isArray(d.command) ? d.command.join(" ") : typeof d.command === "string" ? d.command : null;
  return (
    <div className="request-details">
      {command ? (
        <p>
          Command: <code>{command}</code>
        </p>
      ) : null}
      {typeof d.cwd === "string" ? (
        <p>
          In: <code>{d.cwd}</code>
        </p>
      ) : null}
      <details>
        <summary>All details</summary>
        <pre>{pretty(details)}</pre>
      </details>
    </div>
  );
}

/** Long text folded: the first lines, and the rest on request. */
export function Folded({ text, label }: { text: string; label: string }) {
  const [open, setOpen] = useState(false);
  const lines = text.split("\n");
  const long = lines.length > FOLD_LINES || text.length > FOLD_CHARS;
  if (!long) {
    return (
      <div className="folded">
        <span className="folded-label">{label}</span>
        <pre>{text}</pre>
      </div>
    );
  }
  const head = lines.slice(0, FOLD_LINES).join("\n").slice(0, FOLD_CHARS);
  return (
    <div className="folded">
      <span className="folded-label">{label}</span>
      <pre>{open ? text : `${head}\n…`}</pre>
      <button type="button" className="link-button" aria-expanded={open} onClick={() => setOpen(!open)}>
        {open ? "Show less" : `Show all ${lines.length.toLocaleString()} lines`}
      </button>
    </div>
  );
}

export function pretty(value: unknown): string {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2) ?? "";
  } catch {
    return String(value);
  }
}

/** The raw event log: one row per applied frame, carrying its cursor. */
export function EventLog({ frames }: { frames: readonly Frame[] }) {
  return (
    <WindowedList
      items={frames}
      itemKey={(frame, i) => (frame.kind === "event" ? frame.id : `reset-${i}`)}
      render={(frame) =>
        frame.kind === "event" ? (
          <div className="event-row" data-cursor={frame.id} data-seq={frame.event.seq}>
            <span className="seq">#{frame.event.seq}</span>
            <Time iso={frame.event.time} style="clock" />
            <code className="event-type">{frame.event.type}</code>
            <span className="event-summary">{summary(frame.event.type, frame.event.data)}</span>
          </div>
        ) : (
          <div className="event-row reset-row">
            stream.reset: events {frame.expectedSeq}–{frame.firstAvailableSeq - 1} are gone
          </div>
        )
      }
      label="Run events"
      className="event-log"
      testId="event-log"
      threshold={500}
      estimate={30}
    />
  );
}

function summary(type: string, data: any): string {
  if (!data || typeof data !== "object") return "";
  switch (type) {
    case "message.delta":
    case "message.completed":
    case "reasoning.delta":
      return clip(String(data.text ?? ""));
    case "tool.started":
      return String(data.name ?? "");
    case "tool.output":
      return clip(String(data.output ?? ""));
    case "tool.completed":
      return `${data.status ?? ""}${typeof data.exitCode === "number" ? ` (exit ${data.exitCode})` : ""}`;
    case "file.changed":
      return `${data.change ?? ""} ${data.path ?? ""}`;
    case "human_loop.requested":
      return clip(String(data.prompt ?? ""));
    case "human_loop.resolved":
      return `${data.decision ?? ""} by ${data.resolvedBy ?? ""}`;
    case "run.completed":
      return `${data.status ?? ""}${data.reason ? ` (${data.reason})` : ""}`;
    case "usage":
      return `${data.inputTokens ?? 0} in / ${data.outputTokens ?? 0} out`;
    case "diagnostic":
      return clip(String(data.message ?? ""));
    default:
      return "";
  }
}

function clip(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 120 ? `${line.slice(0, 119)}…` : line;
}
