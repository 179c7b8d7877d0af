interface Waiter {
  order: number;
  grant: () => void;
}

/**
 * One holder per key at a time; waiters are served by `order` (arrival), not by when they asked.
 * A waiter whose signal aborts leaves the line.
 */
export class KeyedLock {
  private readonly lines = new Map<string, { held: boolean; waiters: Waiter[] }>();

  async run<T>(key: string, order: number, signal: AbortSignal, action: () => Promise<T>): Promise<T> {
    await this.acquire(key, order, signal);
    try {
      return await action();
    } finally {
      this.release(key);
    }
  }

  private acquire(key: string, order: number, signal: AbortSignal): Promise<void> {
    const line = this.lines.get(key) ?? { held: false, waiters: [] };
    this.lines.set(key, line);
    if (!line.held) {
      line.held = true;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        line.waiters = line.waiters.filter((waiter) => waiter !== entry);
        reject(signal.reason);
      };
      const entry: Waiter = {
        order,
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      line.waiters.push(entry);
      line.waiters.sort((a, b) => a.order - b.order);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private release(key: string): void {
    const line = this.lines.get(key);
    if (!line) return;
    const next = line.waiters.shift();
    if (next) next.grant();
    else this.lines.delete(key);
  }
}
