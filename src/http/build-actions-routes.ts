import { Router, type RequestHandler, type Response, type Request } from 'express';
import type { BuildRecord } from '../domain/build-record.js';
import type { BuildStore } from '../queue/build-store.js';
import type { AdmissionPorts } from '../admission/admit-build.js';
import { rebuild } from '../admission/rebuild.js';
import { buildView } from './build-view.js';
import { wantsHtml } from './negotiate.js';
import { requireAdmin } from './require-admin.js';

export interface BuildActionDependencies {
  store: BuildStore;
  /** Admits a rebuild as a delivery's build is: stored, queued, superseding what it supersedes. */
  admission: AdmissionPorts;
  /** Cancels a queued or running build, wherever it runs; undefined when it had finished. */
  cancel: (id: string, reason: string) => Promise<BuildRecord | undefined>;
  /** Rebuild and cancel always need it, even where OPEN_PAGES=true opens the pages for reading. */
  adminToken: string | undefined;
  now: () => Date;
}

/**
 * POST /builds/:id/rebuild (a finished build's commit, built again as a new build linked to it) and
 * POST /builds/:id/cancel (a queued or running one). A browser's form gets a redirect to the build's page; an API
 * client gets JSON.
 */
export function buildActionsRoutes(deps: BuildActionDependencies): Router {
  const router = Router();
  const guard = [sameOrigin, deps.adminToken ? requireAdmin(deps.adminToken) : refuseWithoutToken];

  router.post('/builds/:id/rebuild', ...guard, async (req, res) => {
    const outcome = await rebuild({ ...deps.admission, store: deps.store }, req.params.id as string);
    if (outcome.kind === 'unknown') return notFound(res, req.params.id as string);
    if (outcome.kind === 'unfinished') {
      res.status(409).json({ error: `build ${outcome.build.id} is ${outcome.build.status}: rebuild it once it has finished, or cancel it first` });
      return;
    }
    const admission = outcome.admission;
    if (admission.kind === 'queue_full') {
      res.status(503).set('Retry-After', '60').json({ error: `build queue is full (${admission.queued} builds waiting, MAX_QUEUED_BUILDS=${deps.admission.maxQueuedBuilds}): try again later` });
      return;
    }
    const superseded = admission.cancelled.length > 0 ? { cancelled: admission.cancelled.map((cancelled) => cancelled.id) } : {};
    done(req, res, admission.kind === 'created' ? 201 : 200, admission.build, { ...(admission.kind === 'coalesced' ? { coalesced: true } : {}), ...superseded });
  });

  router.post('/builds/:id/cancel', ...guard, async (req, res) => {
    const id = req.params.id as string;
    const cancelled = await deps.cancel(id, 'cancelled by hand');
    if (cancelled) return done(req, res, 200, cancelled, {});
    const build = await deps.store.get(id);
    if (!build) return notFound(res, id);
    res.status(409).json({ error: `build ${build.id} has ${build.status}: only a queued or running build can be cancelled` });
  });

  return router;
}

function done(req: Request, res: Response, status: number, build: BuildRecord, extra: Record<string, unknown>): void {
  const location = `/builds/${encodeURIComponent(build.id)}`;
  if (wantsHtml(req)) res.redirect(303, location);
  else res.status(status).location(location).json({ build: buildView(build), ...extra });
}

function notFound(res: Response, id: string): void {
  res.status(404).json({ error: `no build ${id}` });
}

/**
 * A browser sends the page's basic auth with any form that posts here, whichever site the form is on: a post
 * from another origin is refused. Every current browser says where a post comes from (Origin, Sec-Fetch-Site);
 * one with basic auth that says neither may be an older browser on another site's form, and is refused too. API
 * clients (curl) send neither header, with a bearer token.
 */
const sameOrigin: RequestHandler = (req, res, next) => {
  const refusal = crossSiteRefusal(req);
  if (refusal === undefined) return next();
  res.status(403).json({ error: refusal });
};

function crossSiteRefusal(req: Request): string | undefined {
  const site = req.get('sec-fetch-site');
  const origin = req.get('origin');
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return FROM_ANOTHER_SITE;
  if (origin !== undefined) {
    try {
      if (new URL(origin).host !== req.get('host')) return FROM_ANOTHER_SITE;
    } catch {
      return FROM_ANOTHER_SITE; // "null": a sandboxed or opaque origin
    }
    return undefined;
  }
  if (site === undefined && /^basic /i.test(req.get('authorization') ?? '')) {
    return "a post with basic auth must say where it comes from (Origin or Sec-Fetch-Site, as browsers do): use the build's page, or the API with Authorization: Bearer <ADMIN_TOKEN>";
  }
  return undefined;
}

const FROM_ANOTHER_SITE = "rebuild and cancel are refused from another site: use the build's page on ci_service, or the API";

const refuseWithoutToken: RequestHandler = (_req, res) => {
  res.status(403).json({ error: 'rebuild and cancel need ADMIN_TOKEN: set it on ci_service (OPEN_PAGES=true opens the pages for reading only)' });
};
