import type { BuildRecord } from '../domain/build-record.js';

/**
 * Builds waiting to run, by repository, each repository's in arrival order (`seq`).
 * Taking the next one costs as many steps as there are repositories, not builds: a long queue of one
 * repository behind its running build does not slow down every delivery that joins it.
 */
export class WaitingBuilds {
  private readonly byRepository = new Map<string, BuildRecord[]>();

  get size(): number {
    let size = 0;
    for (const queue of this.byRepository.values()) size += queue.length;
    return size;
  }

  add(build: BuildRecord): void {
    const repository = build.request.repository.fullName;
    let queue = this.byRepository.get(repository);
    if (!queue) this.byRepository.set(repository, (queue = []));
    const last = queue.at(-1);
    // Nearly always the newest; a build taken up after a restart may be older than some.
    if (!last || last.seq < build.seq) queue.push(build);
    else queue.splice(queue.findIndex((other) => other.seq > build.seq), 0, build);
  }

  /** Removes and returns the oldest build whose repository is not `busy`, if any. */
  takeNext(busy: ReadonlySet<string>): BuildRecord | undefined {
    let oldest: { repository: string; queue: BuildRecord[] } | undefined;
    for (const [repository, queue] of this.byRepository) {
      if (busy.has(repository)) continue;
      if (!oldest || queue[0]!.seq < oldest.queue[0]!.seq) oldest = { repository, queue };
    }
    if (!oldest) return undefined;
    const build = oldest.queue.shift()!;
    if (oldest.queue.length === 0) this.byRepository.delete(oldest.repository);
    return build;
  }
}
