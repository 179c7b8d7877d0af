import type { RequestHandler } from 'express';
import { describeError } from '../domain/errors.js';
import type { EngineDescription } from '../engine/engine.js';

export type HealthCheck = () => Promise<void>;

export interface HealthDependencies {
  /** Undefined where this process builds nothing (CI_ROLE=server). */
  docker: HealthCheck | undefined;
  /**
   * What the engine is (version, store, BuildKit, platforms), and whether the registry takes what its store pushes
   * (true, or what the registry said): shown while the engine answers.
   */
  engine: (() => Promise<EngineDescription & { registryTakesItsImages: true | string }>) | undefined;
  /** The builder ci_service uses ("buildkit" or "legacy"), as /healthz shows it. */
  builder: string;
  registry: HealthCheck;
  /** The build store: "sqlite" or "postgresql", and whether it answers. */
  store: { engine: string; check: HealthCheck };
  queue: () => Promise<{ queued: number; running: number }>;
  timeoutMs?: number;
}

/** 200 when the engine, the registry and the build store answer, 503 naming what is down. */
export function healthRoute(deps: HealthDependencies): RequestHandler {
  const timeoutMs = deps.timeoutMs ?? 3000;
  return async (_req, res) => {
    const [docker, registry, database] = await Promise.all([
      deps.docker ? probe(deps.docker, timeoutMs) : 'not used: this process builds nothing (CI_ROLE=server)',
      probe(deps.registry, timeoutMs),
      probe(deps.store.check, timeoutMs),
    ]);
    const healthy = (docker === 'ok' || !deps.docker) && registry === 'ok' && database === 'ok';
    const engine = docker === 'ok' && deps.engine ? await deps.engine().catch(() => undefined) : undefined;
    res.status(healthy ? 200 : 503).json({
      status: healthy ? 'ok' : 'unavailable',
      docker,
      ...(engine ? { engine } : {}),
      builder: deps.builder,
      registry,
      database,
      store: deps.store.engine,
      queue: await deps.queue().catch(() => null),
    });
  };
}

async function probe(check: HealthCheck, timeoutMs: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([check(), timeout]);
    return 'ok';
  } catch (error) {
    return `down: ${describeError(error)}`;
  } finally {
    clearTimeout(timer);
  }
}
