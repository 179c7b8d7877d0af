import type { BuildStore } from '../../src/queue/build-store.js';

/** A build's whole log as text, as GET /builds/:id/log answers it; undefined for an unknown build. */
export async function logOf(store: BuildStore, id: string): Promise<string | undefined> {
  const page = await store.readLogAfter(id, 0, Number.MAX_SAFE_INTEGER);
  return page && page.lines.map((line) => `${line}\n`).join('');
}
