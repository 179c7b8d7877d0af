import { randomUUID } from 'node:crypto';
import type { BuildRequest } from '../github/decide-build.js';
import type { BuildChanges, BuildRecord, BuildStore } from './build-store.js';

/** Builds in this process's memory: gone with it. */
export class MemoryBuildStore implements BuildStore {
  private readonly builds = new Map<string, BuildRecord>();
  private readonly byDelivery = new Map<string, string>();
  private readonly logs = new Map<string, string[]>();

  async add(request: BuildRequest, createdAt: Date): Promise<{ build: BuildRecord; created: boolean }> {
    const existingId = this.byDelivery.get(request.deliveryId);
    const existing = existingId === undefined ? undefined : this.builds.get(existingId);
    if (existing) return { build: { ...existing }, created: false };
    const build: BuildRecord = { id: randomUUID(), request, status: 'queued', tags: [], createdAt };
    this.builds.set(build.id, build);
    this.byDelivery.set(request.deliveryId, build.id);
    this.logs.set(build.id, []);
    return { build: { ...build }, created: true };
  }

  async get(id: string): Promise<BuildRecord | undefined> {
    const build = this.builds.get(id);
    return build && { ...build };
  }

  async list(limit: number): Promise<BuildRecord[]> {
    return [...this.builds.values()].reverse().slice(0, limit).map((build) => ({ ...build }));
  }

  async update(id: string, changes: BuildChanges): Promise<BuildRecord> {
    const build = this.builds.get(id);
    if (!build) throw new Error(`no build ${id}`);
    Object.assign(build, changes);
    return { ...build };
  }

  async appendLog(id: string, text: string): Promise<void> {
    this.logs.get(id)?.push(text);
  }

  async readLog(id: string): Promise<string | undefined> {
    const lines = this.logs.get(id);
    return lines && lines.map((line) => `${line}\n`).join('');
  }

  async close(): Promise<void> {}
}
