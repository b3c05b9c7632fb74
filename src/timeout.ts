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

/**
 * `p`'s value, or the error `onTimeout` makes once `ms` have passed first (p keeps running; a late
 * failure of it is not unhandled; the timer is cleared either way).
 */
export async function orFailAfter<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  const ac = new AbortController();
  try {
    return await Promise.race([
      p,
      sleep(ms, undefined, { signal: ac.signal }).then(() => {
        throw onTimeout();
      }),
    ]);
  } finally {
    ac.abort();
    p.catch(() => undefined);
  }
}
