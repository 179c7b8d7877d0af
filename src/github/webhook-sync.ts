import { repositoryPath } from './github-client.js';
import axios, { type AxiosInstance } from 'axios';
import { describeError } from '../domain/errors.js';
import type { Logger } from 'pino';
import { Periodic } from '../periodic.js';
import { APP_HOOK, hooksApiAnswer, listHooks } from './hooks-api.js';
import { planWebhook, webhookUrl } from './plan-webhook.js';

export interface WebhookSyncOptions {
  github: AxiosInstance;
  /** owner/name of each repository whose webhook ci_service manages (token mode). */
  repositories: string[];
  /** True while ci_service acts as a GitHub App: the App's one webhook is kept pointed at us instead. */
  asApp: () => boolean;
  secret: string;
  /** Where GitHub reaches us now, or undefined while no tunnel is up. */
  publicUrl: () => Promise<string | undefined>;
  intervalMs: number;
  logger: Logger;
}

/** What the hooks API is asked for here, as its errors name it. */
const ABOUT = 'webhooks';

/**
 * Keeps one webhook (pull_request and push) per repository pointing at our public URL, or (as a GitHub App) the
 * App's own webhook (`PATCH /app/hook/config`): on start, and again whenever the URL changes (a free ngrok URL
 * changes at every restart of the tunnel).
 */
export class WebhookSync {
  private syncedUrl: string | undefined;
  private readonly periodic: Periodic<void>;

  constructor(private readonly options: WebhookSyncOptions) {
    this.periodic = new Periodic((signal) => this.syncIfChanged(signal), options.intervalMs);
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One pass; also what tests call. Never throws: failures are logged and tried again next pass. */
  syncNow(): Promise<void> {
    return this.periodic.runNow();
  }

  private async syncIfChanged(signal: AbortSignal): Promise<void> {
    const log = this.options.logger.child({ component: 'webhook-sync' });
    let publicUrl: string | undefined;
    try {
      publicUrl = await this.options.publicUrl();
    } catch (error) {
      log.warn({ error: describeError(error) }, 'cannot learn the public URL yet');
      return;
    }
    const asApp = this.options.asApp();
    // What was synced names the hook too: an App set up while running has its webhook set at the next pass.
    const target = `${asApp ? 'app' : 'repositories'} ${publicUrl}`;
    if (!publicUrl || target === this.syncedUrl) return;
    const url = webhookUrl(publicUrl);
    if (asApp) {
      try {
        hooksApiAnswer(await this.options.github.patch('/app/hook/config', { url, content_type: 'json', insecure_ssl: '0' }, { signal }), APP_HOOK, ABOUT);
        log.info({ url }, "the GitHub App's webhook set");
        this.syncedUrl = target;
      } catch (error) {
        log.warn({ error: describeError(error) }, "could not set the GitHub App's webhook; trying again later");
      }
      return;
    }
    let allDone = true;
    for (const repository of this.options.repositories) {
      try {
        const action = await this.syncRepository(repository, url, signal);
        log.info({ repository, url, action }, 'webhook set');
      } catch (error) {
        allDone = false;
        log.warn({ repository, error: describeError(error) }, 'could not set the webhook; trying again later');
      }
    }
    if (allDone) this.syncedUrl = target;
  }

  private async syncRepository(repository: string, url: string, signal: AbortSignal): Promise<string> {
    const { github, secret } = this.options;
    const plan = planWebhook(await listHooks(github, repository, ABOUT, signal));
    const body = { active: true, events: ['pull_request', 'push'], config: { url, content_type: 'json', secret, insecure_ssl: '0' } };
    let action: string;
    if ('create' in plan.write) {
      hooksApiAnswer(await github.post(`/repos/${repositoryPath(repository)}/hooks`, { name: 'web', ...body }, { signal }), repository, ABOUT);
      action = 'created';
    } else {
      hooksApiAnswer(await github.patch(`/repos/${repositoryPath(repository)}/hooks/${plan.write.update}`, body, { signal }), repository, ABOUT);
      action = `updated hook ${plan.write.update}`;
    }
    for (const id of plan.remove) {
      hooksApiAnswer(await github.delete(`/repos/${repositoryPath(repository)}/hooks/${id}`, { signal }), repository, ABOUT);
      action += `, removed duplicate hook ${id}`;
    }
    return action;
  }
}

/** PUBLIC_URL when set; otherwise the https tunnel the ngrok agent's local API reports. */
export function publicUrlSource(publicUrl: string | undefined, ngrokApiUrl: string | undefined): () => Promise<string | undefined> {
  if (publicUrl) return async () => publicUrl;
  if (!ngrokApiUrl) return async () => undefined;
  return async () => {
    const response = await axios.get<{ tunnels?: { public_url?: string; proto?: string }[] }>(`${ngrokApiUrl}/api/tunnels`, { timeout: 3000 });
    const tunnel = response.data.tunnels?.find((candidate) => candidate.public_url?.startsWith('https://'));
    return tunnel?.public_url;
  };
}
