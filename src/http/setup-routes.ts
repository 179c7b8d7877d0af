import { createHmac, timingSafeEqual } from 'node:crypto';
import escapeHtml from 'escape-html';
import { Router, type Response } from 'express';
import type { Logger } from 'pino';
import type { GitHubApp } from '../github/github-auth.js';
import { layout } from './pages.js';
import { requireAdmin } from './require-admin.js';

export interface SetupDependencies {
  /** /setup needs it; without one (OPEN_PAGES and no ADMIN_TOKEN) it is refused. */
  adminToken: string | undefined;
  /** Where GitHub reaches ci_service (PUBLIC_URL, or the tunnel's), read when the page is shown. */
  publicUrl: () => Promise<string | undefined>;
  /** GitHub's web pages (github.com, or GitHub Enterprise's host). */
  githubWebUrl: string;
  /** The App ci_service acts as, if any. */
  currentApp: () => GitHubApp | undefined;
  /** GITHUB_TOKEN is set: ci_service acts as that token's person, and makes no App. */
  tokenMode: boolean;
  /** Trades GitHub's one-hour code for the App it made (POST /app-manifests/{code}/conversions). */
  convert: (code: string) => Promise<GitHubApp>;
  /** Keeps the App under DATA_DIR and acts as it from now on. */
  adopt: (app: GitHubApp) => Promise<void>;
  logger: Logger;
}

/** What the App may do, and why (README "GitHub App"): the least that builds and reports need. */
export const APP_PERMISSIONS = { contents: 'read', checks: 'write', statuses: 'write', pull_requests: 'read', metadata: 'read' } as const;
export const APP_EVENTS = ['pull_request', 'push', 'check_run', 'check_suite'] as const;
/** GitHub's conversion codes live one hour: a state older than that cannot finish anyway. */
const STATE_LIFETIME_MS = 3600_000;

/** Pure: the manifest GitHub makes the App from (GitHub's App manifest flow). */
export function appManifest(publicUrl: string, name: string) {
  return {
    name,
    url: publicUrl,
    hook_attributes: { url: `${publicUrl}/webhook`, active: true },
    redirect_url: `${publicUrl}/setup/callback`,
    public: false,
    default_permissions: APP_PERMISSIONS,
    default_events: APP_EVENTS,
  };
}

/**
 * GET /setup (ADMIN_TOKEN): with no App yet, a page whose button posts the App's manifest to GitHub, for an
 * account or an organization; GitHub makes the App and sends the browser to GET /setup/callback with a code,
 * which ci_service trades for the App's id, key and webhook secret, keeps (0600) and uses at once, then links to
 * the App's install page. The state GitHub carries back is signed with ADMIN_TOKEN: only a set-up begun here
 * finishes here.
 */
export function setupRoutes(deps: SetupDependencies): Router {
  const router = Router();
  const guard = deps.adminToken ? requireAdmin(deps.adminToken) : refuse;
  const github = new URL(deps.githubWebUrl);

  router.get('/setup', guard, async (req, res) => {
    const app = deps.currentApp();
    if (app) return page(res, 200, 'GitHub App', installedBody(app));
    if (deps.tokenMode) return page(res, 409, 'GitHub App', '<h1>GitHub App</h1><p>ci_service acts on GitHub with <code>GITHUB_TOKEN</code>. To act as a GitHub App instead, unset <code>GITHUB_TOKEN</code> (and <code>WEBHOOK_REPOSITORIES</code>), restart, and come back.</p>');
    const publicUrl = await deps.publicUrl().catch(() => undefined);
    if (!publicUrl) return page(res, 409, 'GitHub App', '<h1>Set up the GitHub App</h1><p>GitHub must reach ci_service: set <code>PUBLIC_URL</code> (or <code>NGROK_API_URL</code> for a tunnel), then come back.</p>');
    const organization = typeof req.query.organization === 'string' && /^[A-Za-z0-9][A-Za-z0-9-]{0,38}$/.test(req.query.organization) ? req.query.organization : undefined;
    const action = new URL(organization ? `/organizations/${organization}/settings/apps/new` : '/settings/apps/new', `${deps.githubWebUrl}/`);
    action.searchParams.set('state', signState(deps.adminToken!, Date.now()));
    const manifest = appManifest(publicUrl, `ci_service ${new URL(publicUrl).host}`.slice(0, 34));
    const body = `<h1>Set up the GitHub App</h1>
<p>ci_service acts on GitHub as an App of its own: it reads the repositories it is installed on, and shows each build as a check run on its commit.</p>
<form method="get" action="/setup"><label>For an organization (empty: your own account) <input name="organization" value="${escapeHtml(organization ?? '')}"></label> <button type="submit">Choose</button></form>
<form method="post" action="${escapeHtml(action.href)}">
<input type="hidden" name="manifest" value="${escapeHtml(JSON.stringify(manifest))}">
<p>GitHub will make the App <strong>${escapeHtml(manifest.name)}</strong> for ${organization ? `the organization <strong>${escapeHtml(organization)}</strong>` : 'your account'}, with its webhook at <code>${escapeHtml(manifest.hook_attributes.url)}</code>.</p>
<button type="submit" id="create-app">Create the GitHub App on GitHub</button>
</form>`;
    page(res, 200, 'GitHub App', body, `form-action 'self' ${github.origin}`);
  });

  router.get('/setup/callback', async (req, res) => {
    const code = typeof req.query.code === 'string' ? req.query.code : '';
    const state = typeof req.query.state === 'string' ? req.query.state : '';
    if (!deps.adminToken || !validState(deps.adminToken, state, Date.now())) {
      return page(res, 400, 'GitHub App', '<h1>Not set up</h1><p>This link did not start at this ci_service\'s <a href="/setup">/setup</a>, or is older than an hour: start again there.</p>');
    }
    if (deps.currentApp()) return page(res, 409, 'GitHub App', installedBody(deps.currentApp()!));
    if (deps.tokenMode) return page(res, 409, 'GitHub App', '<h1>Not set up</h1><p>ci_service acts on GitHub with <code>GITHUB_TOKEN</code>: unset it to use a GitHub App.</p>');
    if (!/^[A-Za-z0-9_-]{1,200}$/.test(code)) return page(res, 400, 'GitHub App', '<h1>Not set up</h1><p>GitHub sent no code: start again at <a href="/setup">/setup</a>.</p>');
    let app: GitHubApp;
    try {
      app = await deps.convert(code);
      await deps.adopt(app);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      deps.logger.warn({ error: message }, 'the GitHub App set-up did not finish');
      return page(res, 502, 'GitHub App', `<h1>Not set up</h1><p>${escapeHtml(message)}</p><p>Start again at <a href="/setup">/setup</a>.</p>`);
    }
    deps.logger.info({ appId: app.id, slug: app.slug }, 'GitHub App set up: ci_service acts as it from now on');
    page(res, 201, 'GitHub App', installedBody(app));
  });

  return router;
}

function installedBody(app: GitHubApp): string {
  const install = app.htmlUrl ? `<p><a id="install-app" href="${escapeHtml(`${app.htmlUrl}/installations/new`)}">Install it on your repositories</a>: ci_service builds those it is installed on.</p>` : '<p>Install it on your repositories from its page on GitHub (Install App).</p>';
  return `<h1>GitHub App</h1><p>ci_service acts on GitHub as the App <strong>${escapeHtml(app.slug ?? app.id)}</strong> (App ID ${escapeHtml(app.id)}).</p>${install}`;
}

function page(res: Response, status: number, title: string, body: string, formAction = "form-action 'self'"): void {
  const policy = `default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; ${formAction}; frame-ancestors 'none'`;
  res.status(status).set('Content-Security-Policy', policy).set('Cache-Control', 'no-store').type('html').send(layout(title, body));
}

function refuse(_req: unknown, res: Response): void {
  res.status(403).json({ error: '/setup needs ADMIN_TOKEN: set it on ci_service' });
}

function signState(key: string, issuedAt: number): string {
  return `${issuedAt}.${createHmac('sha256', key).update(`setup:${issuedAt}`).digest('hex')}`;
}

function validState(key: string, state: string, now: number): boolean {
  const [issued, mac] = state.split('.');
  const issuedAt = Number(issued);
  if (!Number.isInteger(issuedAt) || !mac || now - issuedAt > STATE_LIFETIME_MS || issuedAt > now + 60_000) return false;
  const expected = Buffer.from(signState(key, issuedAt));
  const given = Buffer.from(state);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
