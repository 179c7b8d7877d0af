import { Router } from 'express';
import type { BuildStore } from '../queue/build-store.js';
import { buildView } from './build-view.js';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;

export function buildsRoutes(store: BuildStore): Router {
  const router = Router();

  router.get('/', async (req, res) => {
    const raw = req.query.limit;
    const limit = raw === undefined ? DEFAULT_LIMIT : Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      res.status(400).json({ error: `limit must be a whole number from 1 to ${MAX_LIMIT}` });
      return;
    }
    const builds = await store.list(limit);
    res.json({ builds: builds.map(buildView) });
  });

  router.get('/:id', async (req, res) => {
    const build = await store.get(req.params.id);
    if (!build) {
      res.status(404).json({ error: `no build ${req.params.id}` });
      return;
    }
    res.json({ build: buildView(build) });
  });

  router.get('/:id/log', async (req, res) => {
    const log = await store.readLog(req.params.id);
    if (log === undefined) {
      res.status(404).json({ error: `no build ${req.params.id}` });
      return;
    }
    res.type('text/plain; charset=utf-8').send(log);
  });

  return router;
}
