import { Router, type Request } from 'express';
import type { BuildStore } from '../queue/build-store.js';
import { buildView } from './build-view.js';
import { PAGE_SECURITY_POLICY, renderBuildList, renderBuildPage } from './pages.js';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;

// Browsers get pages; everything else (curl sends Accept: */*, APIs application/json) gets JSON.
function wantsHtml(req: Request): boolean {
  return req.accepts(['json', 'html']) === 'html';
}

/** GET / and /builds (a list), /builds/:id (one build), /builds/:id/log (its log as text). */
export function buildsRoutes(store: BuildStore, now: () => Date): Router {
  const router = Router();

  router.get('/', async (req, res) => {
    const builds = await store.list(DEFAULT_LIMIT);
    if (req.accepts(['html', 'json']) === 'html') {
      res.set('Content-Security-Policy', PAGE_SECURITY_POLICY).type('html').send(renderBuildList(builds, now()));
    } else {
      res.json({ builds: builds.map(buildView) });
    }
  });

  router.get('/builds', async (req, res) => {
    const raw = req.query.limit;
    const limit = raw === undefined ? DEFAULT_LIMIT : Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      res.status(400).json({ error: `limit must be a whole number from 1 to ${MAX_LIMIT}` });
      return;
    }
    const builds = await store.list(limit);
    if (wantsHtml(req)) res.set('Content-Security-Policy', PAGE_SECURITY_POLICY).type('html').send(renderBuildList(builds, now()));
    else res.json({ builds: builds.map(buildView) });
  });

  router.get('/builds/:id', async (req, res) => {
    const build = await store.get(req.params.id);
    if (!build) {
      res.status(404).json({ error: `no build ${req.params.id}` });
      return;
    }
    if (wantsHtml(req)) {
      const log = (await store.readLog(build.id)) ?? '';
      res.set('Content-Security-Policy', PAGE_SECURITY_POLICY).type('html').send(renderBuildPage(build, log, now()));
    } else {
      res.json({ build: buildView(build) });
    }
  });

  router.get('/builds/:id/log', async (req, res) => {
    const log = await store.readLog(req.params.id);
    if (log === undefined) {
      res.status(404).json({ error: `no build ${req.params.id}` });
      return;
    }
    res.set('X-Content-Type-Options', 'nosniff').type('text/plain; charset=utf-8').send(log);
  });

  return router;
}
