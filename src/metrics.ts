import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ImagePusher } from './engine/engine.js';
import type { BuildObserver } from './domain/build-observer.js';
import type { BuildRecord } from './domain/build-record.js';
import type { WorkerSeen } from './queue/build-store.js';

/** Prometheus metrics of one ci_service, in a registry of its own (no global state). */
export class Metrics implements BuildObserver {
  readonly registry = new Registry();
  private readonly deliveries: Counter<'outcome'>;
  private readonly builds: Counter<'outcome' | 'stage'>;
  private readonly buildSeconds: Histogram<'outcome'>;
  private readonly pushSeconds: Histogram;
  private readonly recovered: Counter<'repository'>;

  constructor(
    queue: () => Promise<{ queued: number; running: number }>,
    workers: () => Promise<WorkerSeen[]> = async () => [],
  ) {
    collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.deliveries = new Counter({
      name: 'ci_service_deliveries_total',
      help: 'Webhook deliveries by outcome (queued, coalesced, redelivery, ignored, held, cancelled, unauthorized, bad_request, queue_full, store_unavailable, source_unavailable, shutting_down).',
      labelNames: ['outcome'],
      registers,
    });
    this.builds = new Counter({
      name: 'ci_service_builds_total',
      help: 'Finished builds by outcome (succeeded, failed, cancelled), and the stage a failed one stopped at.',
      labelNames: ['outcome', 'stage'],
      registers,
    });
    this.buildSeconds = new Histogram({
      name: 'ci_service_build_duration_seconds',
      help: 'From the start of a build to its end: fetch, build and push.',
      labelNames: ['outcome'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800],
      registers,
    });
    this.pushSeconds = new Histogram({
      name: 'ci_service_push_duration_seconds',
      help: 'Pushing one tag to the registry.',
      buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.recovered = new Counter({
      name: 'ci_service_deliveries_recovered_total',
      help: 'Deliveries that had failed, which GitHub was asked to send again (DELIVERY_RECOVERY_INTERVAL_S).',
      labelNames: ['repository'],
      registers,
    });
    new Gauge({
      name: 'ci_service_queue_depth',
      help: 'Builds waiting (queued) and building (running) now.',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = await queue();
        this.set({ state: 'queued' }, counts.queued);
        this.set({ state: 'running' }, counts.running);
      },
    });
    new Gauge({
      name: 'ci_service_worker_last_seen_seconds',
      help: 'When each worker process was last seen (Unix time): one that stopped stops moving.',
      labelNames: ['worker'],
      registers,
      async collect() {
        this.reset();
        for (const worker of await workers()) this.set({ worker: worker.name }, Math.floor(worker.seenAt.getTime() / 1000));
      },
    });
    new Gauge({
      name: 'ci_service_worker_engine_info',
      help: 'The engine each worker builds on, as it describes itself (kind, version, API version, image store, BuildKit), and whether the registry takes what its image store pushes: always 1.',
      labelNames: ['worker', 'engine'],
      registers,
      async collect() {
        this.reset();
        for (const worker of await workers()) if (worker.engine) this.set({ worker: worker.name, engine: worker.engine }, 1);
      },
    });
  }

  delivery(outcome: string): void {
    this.deliveries.inc({ outcome });
  }

  deliveryRecovered(repository: string): void {
    this.recovered.inc({ repository });
  }

  finished(build: BuildRecord): void {
    const outcome = build.status;
    this.builds.inc({ outcome, stage: build.failedStage ?? '' });
    if (build.startedAt && build.finishedAt) {
      this.buildSeconds.observe({ outcome }, (build.finishedAt.getTime() - build.startedAt.getTime()) / 1000);
    }
  }

  /** The pusher, timed. */
  timedPusher(pusher: ImagePusher): ImagePusher {
    return {
      push: async (...args) => {
        const end = this.pushSeconds.startTimer();
        try {
          return await pusher.push(...args);
        } finally {
          end();
        }
      },
    };
  }
}
