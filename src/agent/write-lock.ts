/** Serializes the writes to one member's Cluster: commands, the self-fence and the fence sweep never patch it at the same time. */
export class WriteLock {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` after every earlier write to this Cluster has finished (failed ones included). */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}
