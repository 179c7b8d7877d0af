import { randomUUID } from 'node:crypto';
import type { BuildRecord } from '../domain/build-record.js';
import type { BuildStore } from '../queue/build-store.js';
import { admitBuild, type Admission, type AdmissionPorts } from './admit-build.js';

export type Rebuild =
  | { kind: 'unknown' }
  /** Still queued or running: rebuilt once it has finished, or cancelled first. */
  | { kind: 'unfinished'; build: BuildRecord }
  | { kind: 'admitted'; admission: Admission };

/**
 * The one way a finished build is built again, from its page, the API or GitHub's Re-run alike: its commit and
 * trigger as a new build linked to it (`rebuildOf`), admitted as a delivery's build is. `asked.repository`, when
 * given, must be the build's (a check run's event names the repository it came from).
 */
export async function rebuild(
  ports: AdmissionPorts & { store: Pick<BuildStore, 'get' | 'add'> },
  id: string,
  asked: { repository?: string; deliveryId?: string } = {},
): Promise<Rebuild> {
  const { repository } = asked;
  const build = await ports.store.get(id);
  if (!build || (repository !== undefined && build.request.repository.fullName.toLowerCase() !== repository.toLowerCase())) return { kind: 'unknown' };
  if (build.status === 'queued' || build.status === 'running') return { kind: 'unfinished', build };
  // A delivery's id when GitHub asked (its redelivery then builds nothing twice); a fresh one for a click here.
  const request = { ...build.request, deliveryId: asked.deliveryId ?? `rebuild-${randomUUID()}`, rebuildOf: build.id };
  return { kind: 'admitted', admission: await admitBuild(ports, request) };
}
