/**
 * A fixed-size FIFO ring buffer. When full, `push` drops the oldest item and returns it, so a
 * notifier whose receiver is down keeps the newest news (the latest state of each alert) and a
 * bounded amount of memory. Push and shift are O(1).
 */
export class BoundedQueue<T> {
  private readonly items: (T | undefined)[];
  private head = 0;
  private size = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`queue capacity must be a positive integer, got ${capacity}`);
    this.items = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.size;
  }

  /** Appends `item`; when the queue is full the oldest item is removed and returned. */
  push(item: T): T | undefined {
    let dropped: T | undefined;
    if (this.size === this.capacity) {
      dropped = this.items[this.head];
      this.items[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.size--;
    }
    this.items[(this.head + this.size) % this.capacity] = item;
    this.size++;
    return dropped;
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.size--;
    return item;
  }

  /** Removes up to `n` items from the front. */
  take(n: number): T[] {
    const out: T[] = [];
    while (out.length < n && this.size > 0) out.push(this.shift() as T);
    return out;
  }

  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.size; i++) out.push(this.items[(this.head + i) % this.capacity] as T);
    return out;
  }
}
