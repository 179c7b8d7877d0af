import escapeHtml from 'escape-html';
import type { RequestHandler } from 'express';
import type { BuildStore } from '../queue/build-store.js';

/** GET /: the recent builds, each linking to its record and log. Everything shown is escaped. */
export function indexPage(store: BuildStore): RequestHandler {
  return async (_req, res) => {
    const builds = await store.list(50);
    const rows = builds
      .map((build) => {
        const id = escapeHtml(build.id);
        return `<tr><td>${escapeHtml(build.status)}</td><td>${escapeHtml(build.request.repository.fullName)}</td>` +
          `<td>#${build.request.prNumber}</td><td><code>${escapeHtml(build.request.sha.slice(0, 7))}</code></td>` +
          `<td>${escapeHtml(build.image ?? '')}</td><td><a href="/builds/${id}">record</a> · <a href="/builds/${id}/log">log</a></td></tr>`;
      })
      .join('\n');
    res.type('html').send(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ci_service builds</title></head>
<body><h1>ci_service: recent builds</h1>
<table><thead><tr><th>Status</th><th>Repository</th><th>PR</th><th>Commit</th><th>Image</th><th>Details</th></tr></thead>
<tbody>${rows || '<tr><td colspan="6">No builds yet.</td></tr>'}</tbody></table>
</body></html>`);
  };
}
