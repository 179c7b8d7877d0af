import escapeHtml from 'escape-html';
import type { BuildRecord, BuildStatus } from '../domain/build-record.js';
import { describeTrigger, type BuildRequest } from '../domain/build-request.js';

/** Pages get no inline script or style, and no other origin: what a payload or a log holds cannot run. */
export const PAGE_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** Status shown with a symbol and a word, never by colour alone. */
const STATUS_LABEL: Record<BuildStatus, string> = {
  queued: '○ queued',
  running: '◐ running',
  succeeded: '✓ succeeded',
  failed: '✗ failed',
  cancelled: '⊘ cancelled',
};

export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${seconds % 60}s`;
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

export function formatAge(from: Date, now: Date): string {
  const seconds = Math.round((now.getTime() - from.getTime()) / 1000);
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

function duration(build: BuildRecord, now: Date): string {
  if (!build.startedAt) return '—';
  return formatDuration((build.finishedAt ?? now).getTime() - build.startedAt.getTime());
}

function statusBadge(status: BuildStatus): string {
  return `<span class="status status-${status}">${escapeHtml(STATUS_LABEL[status])}</span>`;
}

export function layout(title: string, body: string, options: { refreshSeconds?: number; script?: string } = {}): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${options.refreshSeconds ? `<meta http-equiv="refresh" content="${options.refreshSeconds}">` : ''}
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="/assets/page.css">
${options.script ? `<script src="${options.script}" defer></script>` : ''}
</head>
<body>
<header><a href="/" class="home">ci_service</a></header>
<main>
${body}
</main>
</body>
</html>`;
}

/** GET /: recent builds, newest first. */
export function renderBuildList(builds: BuildRecord[], now: Date): string {
  const rows = builds
    .map((build) => {
      const link = `/builds/${encodeURIComponent(build.id)}`;
      const { repository, sha, trigger } = build.request;
      return `<tr>
<td>${statusBadge(build.status)}</td>
<td><a href="${link}">${escapeHtml(repository.fullName)}</a></td>
<td>${escapeHtml(describeTrigger(trigger))}</td>
<td><code>${escapeHtml(sha.slice(0, 7))}</code></td>
<td>${build.image ? `<code>${escapeHtml(build.image)}</code>` : '—'}</td>
<td>${duration(build, now)}</td>
<td><time datetime="${build.createdAt.toISOString()}">${formatAge(build.createdAt, now)}</time></td>
</tr>`;
    })
    .join('\n');
  const unfinished = builds.some((build) => build.status === 'queued' || build.status === 'running');
  const table = builds.length
    ? `<div class="scroll"><table>
<caption>The ${builds.length} most recent builds${unfinished ? ' (this page refreshes while builds run)' : ''}</caption>
<thead><tr><th scope="col">Status</th><th scope="col">Repository</th><th scope="col">Trigger</th><th scope="col">Commit</th><th scope="col">Image</th><th scope="col">Duration</th><th scope="col">Queued</th></tr></thead>
<tbody>
${rows}
</tbody>
</table></div>`
    : '<p>No builds yet. Merge a pull request in a repository whose webhook points here.</p>';
  return layout('ci_service builds', `<h1>Recent builds</h1>\n${table}`, unfinished ? { refreshSeconds: 5 } : {});
}

/** GET /builds/:id in a browser: the record and its log, followed live while the build runs. */
export function renderBuildPage(build: BuildRecord, log: { lines: string[]; cursor: number }, now: Date): string {
  const { repository, sha, deliveryId, trigger, rebuildOf } = build.request;
  const field = (label: string, value: string) => `<dt>${escapeHtml(label)}</dt><dd>${value}</dd>`;
  const live = build.status === 'queued' || build.status === 'running';
  const fields = [
    field('Status', `<span id="build-status" role="status" aria-live="polite">${statusBadge(build.status)}</span>`),
    field('Repository', `<a href="${escapeHtml(repository.htmlUrl)}">${escapeHtml(repository.fullName)}</a>`),
    field('Trigger', triggerLink(build.request)),
    ...(rebuildOf ? [field('Rebuild of', `<a href="/builds/${encodeURIComponent(rebuildOf)}">${escapeHtml(rebuildOf)}</a>`)] : []),
    field('Commit', `<code>${escapeHtml(sha)}</code>`),
    field('Image', build.image ? `<code>${escapeHtml(build.image)}</code>` : 'not known yet'),
    ...(build.tags.length > 1 ? [field('Tags', build.tags.map((tag) => `<code>${escapeHtml(tag)}</code>`).join(', '))] : []),
    ...(build.digest ? [field(build.platforms ? 'Digest (index)' : 'Digest', `<code>${escapeHtml(build.digest)}</code>`)] : []),
    ...(build.error && build.status === 'cancelled' ? [field('Cancelled', escapeHtml(build.error))] : []),
    ...(build.error && build.status !== 'cancelled' ? [field(`Error${build.failedStage ? ` (${build.failedStage})` : ''}`, `<span class="error">${escapeHtml(build.error)}</span>`)] : []),
    field('Duration', `<span id="build-duration">${duration(build, now)}</span>`),
    field('Queued', `<time datetime="${build.createdAt.toISOString()}">${formatAge(build.createdAt, now)}</time>`),
    ...(build.worker ? [field('Worker', `<code>${escapeHtml(build.worker)}</code>`)] : []),
    ...(build.engine ? [field('Engine', escapeHtml(build.engine))] : []),
    ...(build.resumed ? [field('Resumed', 'yes: taken up again after a restart of ci_service')] : []),
    field('Delivery', `<code>${escapeHtml(deliveryId)}</code>`),
  ];
  const title = `${repository.fullName}, ${describeTrigger(trigger)}`;
  // A plain form: it works without the script, and POSTs only to this origin (form-action 'self').
  const action = live
    ? `<form method="post" action="/builds/${encodeURIComponent(build.id)}/cancel"><button type="submit">Cancel this build</button></form>`
    : `<form method="post" action="/builds/${encodeURIComponent(build.id)}/rebuild"><button type="submit">Rebuild this commit</button></form>`;
  const body = `<h1>Build of ${escapeHtml(title)}</h1>
<dl id="build" data-build-id="${escapeHtml(build.id)}" data-live="${live}" data-log-cursor="${log.cursor}">
${fields.join('\n')}
</dl>
${action}
${build.platforms ? platformTable(build) : ''}<h2 id="log-heading">Log</h2>
<p><a href="/builds/${encodeURIComponent(build.id)}/log">Plain text</a>${live ? ' · this log follows the build as it runs' : ''}</p>
<pre id="log" aria-labelledby="log-heading" tabindex="0">${escapeHtml(log.lines.map((line) => `${line}\n`).join('')) || 'No output yet.'}</pre>`;
  return layout(`Build ${title}: ${build.status}`, body, live ? { script: '/assets/follow-build.js' } : {});
}

/** A multi-platform build's images: each platform's digest, where and how it was built, how long, its own log. */
function platformTable(build: BuildRecord): string {
  const rows = (build.platforms ?? []).map((image) => {
    const log = `/builds/${encodeURIComponent(build.id)}/log?platform=${encodeURIComponent(image.platform)}`;
    return `<tr><td><code>${escapeHtml(image.platform)}</code></td><td>${image.how === 'native' ? 'native' : 'emulated (QEMU)'}</td><td><code>${escapeHtml(image.worker)}</code></td><td>${image.seconds.toFixed(1)} s</td><td>${image.digest ? `<code>${escapeHtml(image.digest)}</code>` : 'not pushed'}</td><td><a href="${escapeHtml(log)}">log</a></td></tr>`;
  });
  return `<h2 id="platforms-heading">Platforms</h2>
<div class="table-wrap"><table aria-labelledby="platforms-heading">
<thead><tr><th scope="col">Platform</th><th scope="col">Built</th><th scope="col">Worker</th><th scope="col">Took</th><th scope="col">Digest</th><th scope="col">Log</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table></div>
`;
}

function triggerLink(request: BuildRequest): string {
  const { trigger, repository } = request;
  const text = escapeHtml(describeTrigger(trigger));
  if (trigger.kind === 'release') return text;
  return `<a href="${escapeHtml(`${repository.htmlUrl}/pull/${trigger.prNumber}`)}">${text}</a>`;
}

export const PAGE_CSS = `
:root { color-scheme: light; --text: #1b1f24; --muted: #4a5360; --line: #d0d7de; --link: #0b57d0; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--text); background: #fff; }
header { padding: .75rem 1rem; border-bottom: 1px solid var(--line); }
.home { font-weight: 700; color: var(--text); text-decoration: none; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
a { color: var(--link); }
a:focus-visible, pre:focus-visible { outline: 3px solid #0b57d0; outline-offset: 2px; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; color: var(--muted); padding-bottom: .5rem; }
th, td { text-align: left; padding: .5rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; white-space: nowrap; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: 0; }
dt { font-weight: 600; color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
@media (max-width: 36rem) { dl { grid-template-columns: 1fr; } dd { margin-bottom: .5rem; } }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: .75rem; overflow: auto; max-height: 70vh; font: .85rem/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
.status { font-weight: 600; white-space: nowrap; }
.status-succeeded { color: #116329; }
.status-failed, .error { color: #a40e26; }
.status-running { color: #0b57d0; }
.status-queued, .status-cancelled { color: #4a5360; }
form { margin: 1rem 0 0; }
button { font: inherit; padding: .4rem .9rem; border: 1px solid var(--line); border-radius: 6px; background: #f6f8fa; cursor: pointer; }
button:focus-visible { outline: 3px solid #0b57d0; outline-offset: 2px; }
`;

/** Follows a running build: polls its record and the log lines it has not shown, reloads the page once it has finished. */
export const FOLLOW_BUILD_JS = `
(function () {
  var root = document.getElementById('build');
  if (!root || root.dataset.live !== 'true') return;
  var id = encodeURIComponent(root.dataset.buildId);
  var log = document.getElementById('log');
  var cursor = root.dataset.logCursor || '0';
  var status = document.getElementById('build-status');
  var labels = { queued: '○ queued', running: '◐ running', succeeded: '✓ succeeded', failed: '✗ failed', cancelled: '⊘ cancelled' };
  function poll() {
    Promise.all([
      fetch('/builds/' + id, { headers: { accept: 'application/json' }, credentials: 'same-origin' }).then(function (r) { return r.json(); }),
      fetch('/builds/' + id + '/log?after=' + cursor, { credentials: 'same-origin' }).then(function (r) {
        return r.text().then(function (text) { return { text: text, cursor: r.headers.get('X-Log-Cursor') }; });
      })
    ]).then(function (answers) {
      var build = answers[0].build;
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      // Only the lines this page has not shown yet: a long log is never sent twice.
      if (answers[1].text) {
        if (cursor === '0') log.textContent = '';
        log.append(answers[1].text);
      }
      cursor = answers[1].cursor || cursor;
      if (atBottom) log.scrollTop = log.scrollHeight;
      var badge = status.firstElementChild;
      badge.className = 'status status-' + build.status;
      badge.textContent = labels[build.status] || build.status;
      if (build.status !== 'queued' && build.status !== 'running') { window.location.reload(); return; }
      setTimeout(poll, 1000);
    }, function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 1000);
})();
`;
