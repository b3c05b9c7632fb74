import { setTimeout as sleep } from "node:timers/promises";

/** `p`'s value, or undefined once `ms` have passed first (p keeps running; its timer is cleared either way). */
export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  const ac = new AbortController();
  try {
    return await Promise.race([p, sleep(ms, undefined, { signal: ac.signal }).catch(() => undefined)]);
  } finally {
    ac.abort();
  }
}
