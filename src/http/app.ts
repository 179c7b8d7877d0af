import express, { type ErrorRequestHandler } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { BuildStore } from '../queue/build-store.js';
import { buildActionsRoutes, type BuildActionDependencies } from './build-actions-routes.js';
import { buildsRoutes } from './builds-routes.js';
import { healthRoute, type HealthDependencies } from './health-route.js';
import { FOLLOW_BUILD_JS, PAGE_CSS } from './pages.js';
import { requireAdmin } from './require-admin.js';
import { unverifiedBodyBudget, WEBHOOK_BODY_BUDGET } from './unverified-body-budget.js';
import { webhookRoute, type WebhookDependencies } from './webhook-route.js';
import { setupRoutes, type SetupDependencies } from './setup-routes.js';


export interface AppDependencies {
  webhook: WebhookDependencies;
  health: HealthDependencies;
  store: BuildStore;
  actions: Omit<BuildActionDependencies, 'store' | 'adminToken' | 'now'>;
  metrics?: Registry;
  /** The GitHub App's set-up (/setup); absent where a process serves no set-up. */
  setup?: Omit<SetupDependencies, 'adminToken' | 'logger'>;
  /** Rebuild and cancel need it; unless OPEN_PAGES, so do pages, the builds API and /metrics. The webhook and /healthz stay open. */
  adminToken?: string;
  /** OPEN_PAGES=true: pages, the builds API and /metrics answer without the token. */
  openPages?: boolean;
  logger: Logger;
  now: () => Date;
}

export function createApp(deps: AppDependencies): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // The raw reader comes first and alone: the signature is checked over the exact bytes GitHub sent,
  // and what unsigned senders can make the daemon hold meanwhile is bounded.
  app.post(
    ['/webhook', '/makeimage'],
    unverifiedBodyBudget(WEBHOOK_BODY_BUDGET),
    express.raw({ type: () => true, limit: WEBHOOK_BODY_BUDGET.maxBodyBytes }),
    webhookRoute(deps.webhook),
  );
  app.get('/healthz', healthRoute(deps.health));
  app.get('/assets/page.css', (_req, res) => void res.type('css').set('Cache-Control', 'max-age=300').send(PAGE_CSS));
  app.get('/assets/follow-build.js', (_req, res) => void res.type('js').set('Cache-Control', 'max-age=300').send(FOLLOW_BUILD_JS));

  // Changes: always with ADMIN_TOKEN, from this site only.
  app.use(buildActionsRoutes({ ...deps.actions, store: deps.store, adminToken: deps.adminToken, now: deps.now }));
  // Its own guard: GitHub sends the browser back to /setup/callback, which the signed state authorises.
  if (deps.setup) app.use(setupRoutes({ ...deps.setup, adminToken: deps.adminToken, logger: deps.logger }));
  // Everything registered below needs ADMIN_TOKEN, unless OPEN_PAGES.
  if (!deps.openPages) app.use(requireAdmin(deps.adminToken));
  const metrics = deps.metrics;
  if (metrics) {
    app.get('/metrics', async (_req, res) => {
      res.type(metrics.contentType).send(await metrics.metrics());
    });
  }
  app.use(buildsRoutes(deps.store, deps.now));
  app.use((req, res) => {
    res.status(404).json({ error: `no route ${req.method} ${req.path}` });
  });
  app.use(errorHandler(deps.logger));
  return app;
}

function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const status = typeof error?.status === 'number' && error.status >= 400 && error.status < 500 ? error.status : 500;
    if (status < 500) {
      res.status(status).json({ error: error.message ?? 'bad request' });
      return;
    }
    logger.error({ path: req.path, error: error instanceof Error ? error.message : String(error) }, 'request failed');
    res.status(500).json({ error: 'internal error; see the ci_service log' });
  };
}
