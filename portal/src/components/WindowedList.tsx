// A scrolling list that renders only the rows in view once it is long (above
// `threshold` rows), so a 10,000-event run stays responsive; shorter lists render every
// row. It follows the newest row while the reader is at the bottom, and offers a jump
// back there otherwise.

import { useVirtualizer } from "@tanstack/react-virtual";
import { useCallback, useEffect, useLayoutEffect, useRef, useState, type ReactNode } from "react";

interface Props<T> {
  items: readonly T[];
  itemKey: (item: T, index: number) => string;
  render: (item: T, index: number) => ReactNode;
  label: string;
  /** Rendered in full up to this many rows. */
  threshold?: number;
  /** Row height guess for the windowed mode (rows are measured once shown). */
  estimate?: number;
  className?: string;
  testId?: string;
}

const AT_BOTTOM_PX = 48;

export function WindowedList<T>({ items, itemKey, render, label, threshold = 300, estimate = 56, className, testId }: Props<T>) {
  const scroller = useRef<HTMLDivElement>(null);
  const [atBottom, setAtBottom] = useState(true);
  const windowed = items.length > threshold;
  const virtualizer = useVirtualizer({
    count: windowed ? items.length : 0,
    getScrollElement: () => scroller.current,
    estimateSize: () => estimate,
    overscan: 6,
    getItemKey: (index) => itemKey(items[index], index),
  });

  const onScroll = useCallback(() => {
    const el = scroller.current;
    if (el) setAtBottom(el.scrollHeight - el.scrollTop - el.clientHeight < AT_BOTTOM_PX);
  }, []);

  const toBottom = useCallback(() => {
    const el = scroller.current;
    if (!el) return;
    if (windowed && items.length > 0) virtualizer.scrollToIndex(items.length - 1, { align: "end" });
    el.scrollTop = el.scrollHeight;
  }, [windowed, items.length, virtualizer]);

  // Follow new rows while the reader is at the bottom.
  useLayoutEffect(() => {
    if (atBottom) toBottom();
  }, [items, atBottom, toBottom]);

  // The list may grow after layout (a row measured taller): stay at the bottom.
  useEffect(() => {
    const el = scroller.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(() => {
      if (atBottom) el.scrollTop = el.scrollHeight;
    });
    if (el.firstElementChild) observer.observe(el.firstElementChild);
    return () => observer.disconnect();
  }, [atBottom, windowed]);

  return (
    <div className={`windowed ${className ?? ""}`}>
      <div
        ref={scroller}
        className="windowed-scroll"
        onScroll={onScroll}
        tabIndex={0}
        role="region"
        aria-label={label}
        data-testid={testId}
        data-windowed={windowed ? "true" : "false"}
      >
        {windowed ? (
          <ol className="windowed-rows" style={{ height: virtualizer.getTotalSize() }}>
            {virtualizer.getVirtualItems().map((row) => (
              <li
                key={row.key}
                data-index={row.index}
                ref={virtualizer.measureElement}
                className="windowed-row"
                style={{ transform: `translateY(${row.start}px)` }}
              >
                {render(items[row.index], row.index)}
              </li>
            ))}
          </ol>
        ) : (
          <ol className="plain-rows">
            {items.map((item, index) => (
              <li key={itemKey(item, index)}>{render(item, index)}</li>
            ))}
          </ol>
        )}
      </div>
      {!atBottom && items.length > 0 ? (
        <button type="button" className="jump" onClick={() => { setAtBottom(true); toBottom(); }}>
          Jump to latest
        </button>
      ) : null}
    </div>
  );
}
