/** What the API server and the probe listener share: their `host:port` and their PEM inputs. */
import { readFileSync } from "node:fs";

/** A PEM given inline or as a file path. */
export const pem = (v: string): string => (v.includes("-----BEGIN") ? v : readFileSync(v, "utf8"));

/** `host:port` or `[v6]:port` as host (without brackets) and port; undefined when it is neither. */
export function parseListen(listen: string): { host: string; port: number } | undefined {
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) return undefined;
  return { host: (m[1] as string).replace(/^\[(.*)\]$/, "$1"), port: Number(m[2]) };
}
