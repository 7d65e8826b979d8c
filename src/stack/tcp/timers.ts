/**
 * The timer queue of a TcpTable: an indexed binary min-heap of connections
 * ordered by their next deadline. Each connection keeps its own slot index,
 * so re-arming is O(log n) with no stale entries, and `tick(now)` touches only
 * connections that are due, however many thousands are open.
 */

/** What the heap needs from an item: its key and a slot it may overwrite. */
export interface HeapItem {
  /** Absolute deadline, ms; the heap's key. Infinity: not in the heap. */
  heapDeadlineMs: number;
  /** Position in the heap, -1 when absent. Owned by the heap. */
  heapIndex: number;
}

export class DeadlineHeap<T extends HeapItem> {
  private items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  /** Earliest deadline, or Infinity when empty. */
  peekDeadline(): number {
    const first = this.items[0];
    return first === undefined ? Infinity : first.heapDeadlineMs;
  }

  /** Earliest item (not removed). */
  peek(): T | undefined {
    return this.items[0];
  }

  /** Sets `item`'s deadline: inserts, moves or (Infinity) removes it. */
  set(item: T, deadlineMs: number): void {
    if (deadlineMs === item.heapDeadlineMs && (item.heapIndex >= 0 || deadlineMs === Infinity)) return;
    if (deadlineMs === Infinity) {
      this.remove(item);
      return;
    }
    const old = item.heapDeadlineMs;
    item.heapDeadlineMs = deadlineMs;
    if (item.heapIndex < 0) {
      item.heapIndex = this.items.length;
      this.items.push(item);
      this.up(item.heapIndex);
    } else if (deadlineMs < old) {
      this.up(item.heapIndex);
    } else {
      this.down(item.heapIndex);
    }
  }

  /** Removes `item` if present. */
  remove(item: T): void {
    const i = item.heapIndex;
    item.heapDeadlineMs = Infinity;
    if (i < 0) return;
    item.heapIndex = -1;
    const last = this.items.pop()!;
    if (last === item) return;
    this.items[i] = last;
    last.heapIndex = i;
    this.down(i);
    this.up(last.heapIndex);
  }

  private up(i: number): void {
    const items = this.items;
    const item = items[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = items[p]!;
      if (parent.heapDeadlineMs <= item.heapDeadlineMs) break;
      items[i] = parent;
      parent.heapIndex = i;
      i = p;
    }
    items[i] = item;
    item.heapIndex = i;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && items[r]!.heapDeadlineMs < items[l]!.heapDeadlineMs ? r : l;
      const child = items[c]!;
      if (child.heapDeadlineMs >= item.heapDeadlineMs) break;
      items[i] = child;
      child.heapIndex = i;
      i = c;
    }
    items[i] = item;
    item.heapIndex = i;
  }
}
