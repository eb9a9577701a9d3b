import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError, get } from "./api";

export interface Loaded<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  reload: () => void;
}

/** GETs `path` (none when `null`), again whenever it changes or `reload` is called. */
export function useApi<T>(path: string | null, refreshMs?: number): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(path !== null);
  const [tick, setTick] = useState(0);
  const latest = useRef(0);

  useEffect(() => {
    if (path === null) return;
    const request = ++latest.current;
    setLoading(true);
    get<T>(path)
      .then((value) => {
        if (request !== latest.current) return;
        setData(value);
        setError(null);
      })
      .catch((e: unknown) => {
        if (request !== latest.current) return;
        setError(e instanceof ApiError ? e : new ApiError(0, "unexpected", String(e)));
      })
      .finally(() => {
        if (request === latest.current) setLoading(false);
      });
  }, [path, tick]);

  useEffect(() => {
    if (!refreshMs || path === null) return;
    const timer = window.setInterval(() => {
      if (!document.hidden) setTick((t) => t + 1);
    }, refreshMs);
    return () => window.clearInterval(timer);
  }, [refreshMs, path]);

  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}
