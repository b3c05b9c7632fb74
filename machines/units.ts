/** Durations and sizes as pgfed writes them in every sentence (logs, audit, API, CLI). */

/** `250 ms`, `4.5 s`, `2 min 5 s`. */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
  const min = Math.floor(s / 60);
  const rest = Math.round(s - min * 60);
  return rest ? `${min} min ${rest} s` : `${min} min`;
}

const BYTE_UNITS = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"] as const;

/** `512 B`, `1.2 MiB`, `3.0 GiB` (binary units, one decimal); WAL byte counts are bigint, loss estimates numbers. */
export function formatBytes(bytes: number | bigint): string {
  if (bytes < 0) return `-${formatBytes(-bytes)}`;
  if (bytes < 1024) return `${bytes} B`;
  let value = Number(bytes) / 1024;
  let unit: string = BYTE_UNITS[0];
  for (const next of BYTE_UNITS.slice(1)) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return `${value.toFixed(1)} ${unit}`;
}
