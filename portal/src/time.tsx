// Times are shown in the viewer's own time zone (the browser's), with the zone named.

// dateStyle / timeStyle cannot be combined with timeZoneName: the fields one by one.
const full = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});
const short = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function parse(iso: string | null | undefined): Date | null {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function formatFull(iso: string | null | undefined): string {
  const date = parse(iso);
  return date ? full.format(date) : "";
}

/** `<time>` in the viewer's zone; the full date and zone on hover. */
export function Time({ iso, style = "short" }: { iso: string | null | undefined; style?: "short" | "clock" | "full" }) {
  const date = parse(iso);
  if (!date) return null;
  const text = style === "clock" ? clock.format(date) : style === "full" ? full.format(date) : short.format(date);
  return (
    <time dateTime={date.toISOString()} title={full.format(date)}>
      {text}
    </time>
  );
}

/** The viewer's time zone, e.g. `Europe/Berlin`. */
export function viewerZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}
