import { Router } from 'express';
import { normalisePlatform } from '../rules/platforms.js';
import { OWN_LINE_PREFIX } from '../queue/build-log.js';
import { wantsHtml } from './negotiate.js';
import type { BuildStore } from '../queue/build-store.js';
import { buildView } from './build-view.js';
import { PAGE_SECURITY_POLICY, renderBuildList, renderBuildPage } from './pages.js';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;
/** Lines in one answer to a reader that follows a build (`?after=`). */
const LOG_PAGE_LINES = 5000;


/** One platform's lines of a multi-platform build's log (each carries `[platform] `), or every line. */
function linesOf(lines: string[], platform: string | undefined): string[] {
  if (platform === undefined) return lines;
  const prefix = `[${platform}] `;
  return lines.filter((line) => line.startsWith(prefix) || line.startsWith(`${OWN_LINE_PREFIX}${prefix}`));
}

/** GET / and /builds (a list), /builds/:id (one build), /builds/:id/log (its log as text). */
export function buildsRoutes(store: BuildStore, now: () => Date): Router {
  const router = Router();

  router.get('/', async (req, res) => {
    const builds = await store.list(DEFAULT_LIMIT);
    if (wantsHtml(req)) {
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
      const log = (await store.readLogAfter(build.id, 0, Number.MAX_SAFE_INTEGER)) ?? { lines: [], cursor: 0 };
      res.set('Content-Security-Policy', PAGE_SECURITY_POLICY).type('html').send(renderBuildPage(build, log, now()));
    } else {
      res.json({ build: buildView(build) });
    }
  });

  router.get('/builds/:id/log', async (req, res) => {
    const after = req.query.after === undefined ? 0 : Number(req.query.after);
    if (!Number.isSafeInteger(after) || after < 0) {
      res.status(400).json({ error: 'after must be the X-Log-Cursor of an earlier answer (a whole number ≥ 0)' });
      return;
    }
    const platform = req.query.platform;
    if (platform !== undefined && (typeof platform !== 'string' || normalisePlatform(platform) !== platform)) {
      res.status(400).json({ error: 'platform must be one platform of the build, as its record lists it, e.g. linux/arm64' });
      return;
    }
    // Following a build asks for what it has not seen, a page at a time; the whole log is bounded by its cap.
    const page = await store.readLogAfter(req.params.id, after, req.query.after === undefined ? Number.MAX_SAFE_INTEGER : LOG_PAGE_LINES);
    if (page === undefined) {
      res.status(404).json({ error: `no build ${req.params.id}` });
      return;
    }
    res
      .set({ 'X-Content-Type-Options': 'nosniff', 'X-Log-Cursor': String(page.cursor) })
      .type('text/plain; charset=utf-8')
      .send(linesOf(page.lines, platform).map((line) => `${line}\n`).join(''));
  });

  return router;
}
