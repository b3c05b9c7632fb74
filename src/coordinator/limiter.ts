/**
 * A counting semaphore for KV round trips while the leader loads many federations at once: all
 * runtimes start together (a fresh one waits for observations without holding a slot), and at
 * most `limit` of their KV reads/writes are in flight, so NATS is not handed 1000 requests at once.
 */
export type Limit = <T>(fn: () => Promise<T>) => Promise<T>;

export interface Limiter {
  run: Limit;
  /** Calls running now / waiting for a slot. */
  readonly active: number;
  readonly waiting: number;
}

export function createLimiter(limit: number): Limiter {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limiter: limit must be a positive integer, not ${limit}`);
  let active = 0;
  const queue: Array<() => void> = [];
  const release = (): void => {
    active--;
    const next = queue.shift();
    if (next) {
      active++;
      next();
    }
  };
  const run = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active < limit) active++;
    else await new Promise<void>((resolve) => queue.push(resolve));
    try {
      return await fn();
    } finally {
      release();
    }
  };
  return {
    run,
    get active() {
      return active;
    },
    get waiting() {
      return queue.length;
    },
  };
}
