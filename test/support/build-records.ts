import type { BuildRecord } from '../../src/domain/build-record.js';

/** A failed merge build of octo/app, as a store would hand it out: what pure tests of pages and reports start from. */
export function buildRecord(overrides: Partial<BuildRecord> = {}): BuildRecord {
  return {
    id: 'b1',
    seq: 1,
    request: {
      deliveryId: 'd1',
      repository: { owner: 'octo', name: 'app', fullName: 'octo/app', htmlUrl: 'https://github.com/octo/app', private: false },
      sha: 'a'.repeat(40),
      trigger: { kind: 'merge', prNumber: 7, baseRef: 'main' },
    },
    status: 'failed',
    tags: [],
    resumed: false,
    attempt: 1,
    createdAt: new Date('2026-11-25T11:55:00Z'),
    startedAt: new Date('2026-11-25T11:55:00Z'),
    finishedAt: new Date('2026-11-25T11:56:30Z'),
    ...overrides,
  };
}
