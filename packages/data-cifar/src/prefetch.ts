/**
 * Runs `make(i)` for i in [start, end) up to `depth` items ahead of the consumer. Each item is
 * built in its own macrotask, so while the consumer awaits (e.g. a backend's data sync) the next
 * batches are assembled instead of being built only when asked for.
 */
export async function* prefetch<T>(
  start: number,
  end: number,
  depth: number,
  make: (i: number) => T,
): AsyncGenerator<T> {
  if (depth <= 0) {
    for (let i = start; i < end; i++) yield make(i);
    return;
  }
  const queue: Promise<T>[] = [];
  let next = start;
  let cancelled = false;
  const fill = () => {
    while (queue.length < depth && next < end) {
      const i = next++;
      const p = new Promise<T>((resolve, reject) =>
        setImmediate(() => {
          if (cancelled) return resolve(undefined as T);
          try {
            resolve(make(i));
          } catch (err) {
            reject(err);
          }
        }),
      );
      // Errors surface when the consumer reaches this item, not as unhandled rejections.
      p.catch(() => undefined);
      queue.push(p);
    }
  };
  try {
    fill();
    while (queue.length > 0) {
      const item = await queue.shift()!;
      fill();
      yield item;
    }
  } finally {
    cancelled = true;
  }
}
