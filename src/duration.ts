const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Parses "30s", "1.5m", "250ms", "2h" into milliseconds; throws a message naming the bad text. */
export function parseDurationMs(text: string): number {
  const parts = text.trim().match(/\d+(?:\.\d+)?(?:ms|s|m|h|d)/g);
  if (!parts || parts.join("") !== text.trim()) {
    throw new Error(`invalid duration "${text}" (expected e.g. 500ms, 30s, 5m, 1h, 1m30s)`);
  }
  let total = 0;
  for (const p of parts) {
    const m = DURATION_RE.exec(p);
    if (!m) throw new Error(`invalid duration "${text}"`);
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return Math.round(total);
}

/** Formats milliseconds for humans: 450ms, 12.3s, 4m05s, 2h10m. */
export function formatDurationMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  const sign = ms < 0 ? "-" : "";
  const a = Math.abs(ms);
  if (a < 1_000) return `${sign}${Math.round(a)}ms`;
  if (a < 60_000) return `${sign}${(a / 1_000).toFixed(a < 10_000 ? 2 : 1)}s`;
  if (a < 3_600_000) {
    const m = Math.floor(a / 60_000);
    const s = Math.round((a % 60_000) / 1_000);
    return `${sign}${m}m${String(s).padStart(2, "0")}s`;
  }
  const h = Math.floor(a / 3_600_000);
  const m = Math.round((a % 3_600_000) / 60_000);
  return `${sign}${h}h${String(m).padStart(2, "0")}m`;
}
