// The frames a tab received for a run, kept in sessionStorage so that a reload resumes
// the stream from the last cursor instead of reading the run again from its start.
//
// Frames are stored in chunks of CHUNK, so saving after a batch rewrites only the last
// chunk. The cache is per tab (sessionStorage), holds at most MAX_RUNS runs, and gives
// up on a run whose frames do not fit (the storage quota): that run is then read from
// its start after a reload, which is slower but just as exact.

import type { Frame } from "./reducer";

const PREFIX = "sy.stream.";
const INDEX_KEY = `${PREFIX}index`;
const CHUNK = 500;
const MAX_RUNS = 5;
const VERSION = 1;

interface Meta {
  v: number;
  count: number;
}

function storage(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

function metaKey(runId: string): string {
  return `${PREFIX}${runId}.meta`;
}

function chunkKey(runId: string, chunk: number): string {
  return `${PREFIX}${runId}.${chunk}`;
}

/** The cached frames of `runId`, or `null` when there are none (or they are unusable). */
export function loadFrames(runId: string): Frame[] | null {
  const store = storage();
  if (!store) return null;
  try {
    const meta = JSON.parse(store.getItem(metaKey(runId)) ?? "null") as Meta | null;
    if (!meta || meta.v !== VERSION || meta.count <= 0) return null;
    const frames: Frame[] = [];
    for (let chunk = 0; chunk * CHUNK < meta.count; chunk++) {
      const part = JSON.parse(store.getItem(chunkKey(runId, chunk)) ?? "null") as Frame[] | null;
      if (!Array.isArray(part)) throw new Error("missing chunk");
      frames.push(...part);
    }
    if (frames.length !== meta.count || !isOrdered(frames)) throw new Error("inconsistent");
    return frames;
  } catch {
    dropFrames(runId);
    return null;
  }
}

/** Events in strictly increasing `seq` order, each after its predecessor or a reset. */
function isOrdered(frames: Frame[]): boolean {
  let last = 0;
  for (const frame of frames) {
    if (frame.kind === "reset") {
      last = frame.firstAvailableSeq - 1;
      continue;
    }
    if (frame.event.seq !== last + 1 || !frame.id) return false;
    last = frame.event.seq;
  }
  return true;
}

/**
 * Saves `frames` (the run's whole list), of which the first `saved` are stored already.
 * Returns how many are stored now; -1 when the run could not be cached (it is dropped).
 */
export function saveFrames(runId: string, frames: readonly Frame[], saved: number): number {
  const store = storage();
  if (!store || saved < 0) return -1;
  if (frames.length === saved) return saved;
  try {
    touch(store, runId);
    for (let chunk = Math.floor(saved / CHUNK); chunk * CHUNK < frames.length; chunk++) {
      store.setItem(chunkKey(runId, chunk), JSON.stringify(frames.slice(chunk * CHUNK, (chunk + 1) * CHUNK)));
    }
    store.setItem(metaKey(runId), JSON.stringify({ v: VERSION, count: frames.length } satisfies Meta));
    return frames.length;
  } catch {
    // Over the quota: a partial cache would be worse than none.
    dropFrames(runId);
    return -1;
  }
}

export function dropFrames(runId: string): void {
  const store = storage();
  if (!store) return;
  const prefix = `${PREFIX}${runId}.`;
  for (let i = store.length - 1; i >= 0; i--) {
    const key = store.key(i);
    if (key?.startsWith(prefix)) store.removeItem(key);
  }
  const index = readIndex(store).filter((id) => id !== runId);
  store.setItem(INDEX_KEY, JSON.stringify(index));
}

function readIndex(store: Storage): string[] {
  try {
    const index = JSON.parse(store.getItem(INDEX_KEY) ?? "[]");
    return Array.isArray(index) ? index.filter((id) => typeof id === "string") : [];
  } catch {
    return [];
  }
}

/** Marks `runId` as the most recent run and evicts the oldest beyond MAX_RUNS. */
function touch(store: Storage, runId: string): void {
  const index = readIndex(store).filter((id) => id !== runId);
  index.push(runId);
  while (index.length > MAX_RUNS) {
    const evicted = index.shift();
    if (evicted) dropFrames(evicted);
  }
  store.setItem(INDEX_KEY, JSON.stringify(index));
}
