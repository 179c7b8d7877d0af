import type { BuildRecord } from '../domain/build-record.js';

/** A build as the HTTP API shows it (DESIGN.md's fields). */
export function buildView(build: BuildRecord) {
  return {
    id: build.id,
    deliveryId: build.request.deliveryId,
    repository: build.request.repository.fullName,
    sha: build.request.sha,
    trigger: build.request.trigger,
    ...(build.request.trigger.kind !== 'release' ? { prNumber: build.request.trigger.prNumber, baseRef: build.request.trigger.baseRef } : {}),
    ...(build.request.rebuildOf !== undefined ? { rebuildOf: build.request.rebuildOf } : {}),
    image: build.image ?? null,
    tags: build.tags,
    status: build.status,
    resumed: build.resumed,
    ...(build.worker !== undefined ? { worker: build.worker } : {}),
    ...(build.engine !== undefined ? { engine: build.engine } : {}),
    ...(build.error !== undefined && build.status === 'cancelled' ? { cancelReason: build.error } : {}),
    ...(build.error !== undefined && build.status !== 'cancelled' ? { error: build.error, failedStage: build.failedStage } : {}),
    ...(build.digest !== undefined ? { digest: build.digest } : {}),
    ...(build.platforms !== undefined ? { platforms: build.platforms } : {}),
    createdAt: build.createdAt.toISOString(),
    ...(build.startedAt ? { startedAt: build.startedAt.toISOString() } : {}),
    ...(build.finishedAt ? { finishedAt: build.finishedAt.toISOString() } : {}),
  };
}

export type BuildView = ReturnType<typeof buildView>;
