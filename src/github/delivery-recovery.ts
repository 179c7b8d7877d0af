import { repositoryPath } from './github-client.js';
import type { AxiosInstance } from 'axios';
import type { Logger } from 'pino';
import { describeError } from '../domain/errors.js';
import { Periodic } from '../periodic.js';
import { APP_HOOK, hooksApiAnswer, listHooks } from './hooks-api.js';
import { isOurHook } from './plan-webhook.js';

/** One attempt as GitHub's hook deliveries API lists it (the fields we use). */
export interface HookDeliveryAttempt {
  id: number;
  guid: string;
  event: string;
  action?: string | null;
  delivered_at: string;
  redelivery: boolean;
  /** 0 when ci_service did not answer (down, a tunnel down, a timeout). */
  status_code: number;
}

/** GitHub redelivers only what it delivered within the last three days. */
const REDELIVERABLE_MS = 3 * 24 * 3600 * 1000;
/** Asked for again at most this often per delivery, so one that keeps failing does not loop. */
const MAX_REQUESTS_PER_DELIVERY = 3;
const PAGE = 100;
const MAX_PAGES = 10;
const ABOUT = 'webhook deliveries';

/**
 * Pure: the deliveries to ask GitHub for again, oldest first (a pull request's heads arrive in their order): those
 * whose every attempt failed without a 4xx — a 4xx says the delivery itself is wrong (a bad signature, a bad
 * payload) and it would be answered the same again; 408 and 429 are the exceptions.
 */
export function planRedeliveries(attempts: HookDeliveryAttempt[], requested: ReadonlyMap<string, number>, now: Date): HookDeliveryAttempt[] {
  const byGuid = new Map<string, HookDeliveryAttempt[]>();
  for (const attempt of attempts) byGuid.set(attempt.guid, [...(byGuid.get(attempt.guid) ?? []), attempt]);
  const plan: HookDeliveryAttempt[] = [];
  for (const [guid, tries] of byGuid) {
    if (tries.some((attempt) => attempt.status_code >= 200 && attempt.status_code < 300)) continue;
    const latest = tries.reduce((a, b) => (Date.parse(b.delivered_at) > Date.parse(a.delivered_at) ? b : a));
    const permanent = latest.status_code >= 400 && latest.status_code < 500 && latest.status_code !== 408 && latest.status_code !== 429;
    if (permanent || now.getTime() - Date.parse(latest.delivered_at) > REDELIVERABLE_MS) continue;
    if ((requested.get(guid) ?? 0) >= MAX_REQUESTS_PER_DELIVERY) continue;
    plan.push(latest);
  }
  const first = (attempt: HookDeliveryAttempt) => Math.min(...(byGuid.get(attempt.guid) ?? [attempt]).map((each) => Date.parse(each.delivered_at)));
  return plan.sort((a, b) => first(a) - first(b));
}

export interface DeliveryRecoveryOptions {
  github: AxiosInstance;
  /** owner/name of each repository whose hook ci_service manages (WEBHOOK_REPOSITORIES), in token mode. */
  repositories: string[];
  /** True while ci_service acts as a GitHub App: the App's webhook deliveries (`/app/hook/deliveries`) are read instead. */
  asApp: () => boolean;
  /** 0: only at start. */
  intervalMs: number;
  /** Counts each delivery GitHub was asked to send again (metrics). */
  onRecovered: (repository: string) => void;
  logger: Logger;
  now?: () => Date;
}

/**
 * GitHub does not retry a delivery that failed. For the hooks ci_service manages, this reads their recent
 * deliveries (at start and every DELIVERY_RECOVERY_INTERVAL_S) and asks GitHub to send again those that never got
 * a 2xx; a redelivery keeps its delivery id, so one that did arrive meanwhile is answered as a redelivery.
 */
export class DeliveryRecovery {
  private readonly requested = new Map<string, number>();
  private readonly periodic: Periodic<number>;

  constructor(private readonly options: DeliveryRecoveryOptions) {
    this.periodic = new Periodic((signal) => this.recover(signal), options.intervalMs);
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One pass over every repository; how many deliveries were asked for again. Never throws: failures are logged. */
  recoverNow(): Promise<number> {
    return this.periodic.runNow();
  }

  private async recover(signal: AbortSignal): Promise<number> {
    if (this.options.asApp()) {
      try {
        return await this.recoverHook(APP_HOOK, '/app/hook', signal);
      } catch (error) {
        this.options.logger.warn({ component: 'delivery-recovery', error: describeError(error) }, "could not check the GitHub App's webhook deliveries; trying again later");
        return 0;
      }
    }
    let recovered = 0;
    for (const repository of this.options.repositories) {
      try {
        recovered += await this.recoverRepository(repository, signal);
      } catch (error) {
        this.options.logger.warn({ component: 'delivery-recovery', repository, error: describeError(error) }, 'could not check the webhook deliveries; trying again later');
      }
    }
    return recovered;
  }

  private async recoverRepository(repository: string, signal: AbortSignal): Promise<number> {
    const hooks = await listHooks(this.options.github, repository, ABOUT, signal);
    let recovered = 0;
    for (const hook of hooks.filter(isOurHook)) recovered += await this.recoverHook(repository, `/repos/${repositoryPath(repository)}/hooks/${hook.id}`, signal);
    return recovered;
  }

  /** One hook's failed deliveries asked for again: a repository's (`/repos/…/hooks/{id}`) or the App's (`/app/hook`). */
  private async recoverHook(owner: string, hookPath: string, signal: AbortSignal): Promise<number> {
    const { github, logger } = this.options;
    let recovered = 0;
    const attempts = await this.recentDeliveries(owner, hookPath, signal);
    for (const delivery of planRedeliveries(attempts, this.requested, (this.options.now ?? (() => new Date()))())) {
      hooksApiAnswer(await github.post(`${hookPath}/deliveries/${delivery.id}/attempts`, undefined, { signal }), owner, ABOUT);
      this.requested.set(delivery.guid, (this.requested.get(delivery.guid) ?? 0) + 1);
      this.options.onRecovered(owner);
      recovered += 1;
      logger.info(
        { component: 'delivery-recovery', repository: owner, deliveryId: delivery.guid, event: delivery.event, action: delivery.action ?? undefined, failedWith: delivery.status_code || 'no answer', deliveredAt: delivery.delivered_at },
        'asked GitHub to redeliver a delivery that failed',
      );
    }
    return recovered;
  }

  /** The hook's deliveries of the last three days, following GitHub's cursor pages (newest first). */
  private async recentDeliveries(owner: string, hookPath: string, signal: AbortSignal): Promise<HookDeliveryAttempt[]> {
    const attempts: HookDeliveryAttempt[] = [];
    const oldest = Date.now() - REDELIVERABLE_MS;
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const response = hooksApiAnswer(
        await this.options.github.get<HookDeliveryAttempt[]>(`${hookPath}/deliveries`, { params: { per_page: PAGE, ...(cursor ? { cursor } : {}) }, signal }),
        owner,
        ABOUT,
      );
      attempts.push(...response.data);
      cursor = nextCursor(String(response.headers.link ?? ''));
      if (!cursor || response.data.some((attempt) => Date.parse(attempt.delivered_at) < oldest)) break;
    }
    return attempts;
  }
}

/** GitHub pages hook deliveries with a cursor in the Link header's rel="next" URL. */
function nextCursor(link: string): string | undefined {
  const next = link.split(',').find((part) => /rel="next"/.test(part));
  const url = next?.match(/<([^>]+)>/)?.[1];
  return url ? (new URL(url).searchParams.get('cursor') ?? undefined) : undefined;
}
