/**
 * Sends values one at a time, keeping only the newest one waiting. Observations, lag samples and
 * heartbeats are level-triggered: when the bus is slow or down, an older value still waiting is
 * worth nothing once a newer one exists, so at most one publish per stream is in flight and at most
 * one waits behind it (bounded memory, no pile-up of 10 s publish timeouts).
 */
export class LatestPublisher<T> {
  private pending: T | undefined;
  private hasPending = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly send: (value: T) => Promise<void>,
    private readonly onError: (err: unknown, value: T) => void,
  ) {}

  /** Queues `value`, replacing a value not yet sent. */
  offer(value: T): void {
    this.pending = value;
    this.hasPending = true;
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves when nothing is in flight (for stop()). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Drops the value waiting (not the one in flight). */
  clear(): void {
    this.pending = undefined;
    this.hasPending = false;
  }

  private async drain(): Promise<void> {
    while (this.hasPending) {
      const value = this.pending as T;
      this.pending = undefined;
      this.hasPending = false;
      try {
        await this.send(value);
      } catch (e) {
        this.onError(e, value);
      }
    }
  }
}
