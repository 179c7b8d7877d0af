import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { cp, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Repository } from '../../src/domain/build-request.js';
import { GitHubAppStandIn } from './github-app-stand-in.js';
import { postDelivery, type HookDelivery } from './hookshot.js';

const run = promisify(execFile);

export interface StandInRepository extends Repository {
  /** A real git commit of the fixture's files: what GitHub would hold. */
  sha: string;
  gitDir: string;
  /** A tarball made ahead of time (prepareTarball), served as a file. */
  preparedTarball?: string;
  /** git's tree of the commit, listed once when committed: GitHub answers it without running git. */
  tree: { path: string; mode: string; type: string; sha: string; size?: number }[];
}

export interface StoredHook {
  id: number;
  name: string;
  active: boolean;
  events: string[];
  config: { url: string; content_type: string; secret?: string; insecure_ssl?: string };
}


export interface RecordedRequest {
  method: string;
  path: string;
  authorization: string | undefined;
  /** The status answered, once answered. */
  status?: number;
}

/**
 * A small stand-in for GitHub's REST API: the contents API and the tarball API (302 to a
 * codeload-style URL serving `git archive` output, as GitHub does), for fixture repositories.
 * Private repositories answer 404 unless the request carries `token`, exactly as GitHub does.
 */
export class GitHubStandIn {
  readonly requests: RecordedRequest[] = [];
  /** GitHub Apps: the manifest flow, JWTs, installations and their tokens, check runs, the App's webhook. */
  readonly apps = new GitHubAppStandIn(
    () => this.url,
    (fullName) => [...this.repositories.values()].some((repository) => repository.fullName.toLowerCase() === fullName.toLowerCase()),
  );
  private readonly repositories = new Map<string, StandInRepository>();
  /** Pull requests by owner/name#number, as GET /repos/{owner}/{repo}/pulls/{number} shows them (a few fields). */
  private readonly pullRequests = new Map<string, { state: 'open' | 'closed'; headSha: string; labels: string[] }>();
  /** Collaborators' permissions by owner/name@login: admin, write (maintain too), read (triage too), none. */
  private readonly permissions = new Map<string, 'admin' | 'write' | 'read' | 'none'>();
  /** owner/name@branch → the commit the branch points at; each addRepository moves its branch, as a push does. */
  private readonly branches = new Map<string, string>();
  private readonly failures: { pattern: RegExp; status: number; remaining: number }[] = [];
  private readonly rateLimits: { pattern: RegExp; kind: 'primary' | 'secondary'; remaining: number; retryAfterS: number }[] = [];
  /** GitHub's tree listing limit (100,000 entries); lowered by a test to see the tarball fallback run. */
  treeEntryLimit = 100_000;
  private readonly hangs: RegExp[] = [];
  private readonly brokenTarballs = new Map<string, TarballBreak>();
  /** Blob id → where its bytes are: the committed file in the repository's work tree. */
  private readonly blobs = new Map<string, { gitDir: string; path: string; symlink: boolean; fullName: string }>();
  /** Webhooks by owner/name, as GitHub stores them (the secret unmasked, for assertions). */
  readonly hooks = new Map<string, StoredHook[]>();
  /** Commit statuses posted, by commit SHA, in order. */
  readonly statuses = new Map<string, Record<string, string>[]>();
  /**
   * A static file server (the benchmark's busybox httpd) with the work directory as its root: prepared
   * tarballs of public repositories are then downloaded from it, as codeload serves them, and not
   * through this process.
   */
  preparedTarballServer: string | undefined;
  /** Each hook's delivery attempts, oldest first. */
  readonly deliveries = new Map<number, HookDelivery[]>();
  private nextDeliveryId = 1;
  private nextHookId = 1;
  private workDir = '';
  private server: http.Server | undefined;
  url = '';

  constructor(private readonly token?: string) {}

  async start(port = 0, host = '127.0.0.1'): Promise<this> {
    this.workDir = await mkdtemp(path.join(tmpdir(), 'github-stand-in-'));
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: String(error) }));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, host, resolve));
    this.url = `http://${host}:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** A scratch folder removed with the stand-in, for a test's own files. */
  get workDirectory(): string {
    return this.workDir;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await rm(this.workDir, { recursive: true, force: true });
  }

  /** Commits the fixture folder `files` as owner/name and returns the repository with its commit SHA. */
  async addRepository(
    fullName: string,
    files: string,
    options: {
      private?: boolean;
      extraFiles?: Record<string, string>;
      prepareTarball?: boolean;
      /** The image this commit builds: sets "service_name" in the fixture's dockerInfo.json (an image belongs to one repository). */
      image?: string;
      /** The branch this commit is pushed to (default main, the default branch); null: none (a fork's head). */
      branch?: string | null;
    } = {},
  ): Promise<StandInRepository> {
    const [owner, name] = fullName.split('/') as [string, string];
    const gitDir = path.join(this.workDir, `${owner}-${name}-${this.repositories.size}`);
    await cp(files, gitDir, { recursive: true, verbatimSymlinks: true });
    for (const [file, content] of Object.entries(options.extraFiles ?? {})) await writeFile(path.join(gitDir, file), content);
    if (options.image) {
      const spec = JSON.parse(await readFile(path.join(gitDir, 'dockerInfo.json'), 'utf8')) as Record<string, unknown>;
      await writeFile(path.join(gitDir, 'dockerInfo.json'), JSON.stringify({ ...spec, service_name: options.image }));
    }
    const git = (...args: string[]) => run('git', ['-C', gitDir, ...args]);
    await git('init', '-q');
    await git('add', '-A');
    await git('-c', 'user.name=fixture', '-c', 'user.email=fixture@example.com', 'commit', '-q', '-m', `fixture ${fullName}`);
    const sha = (await git('rev-parse', 'HEAD')).stdout.trim();
    const tree = (await run('git', ['-C', gitDir, 'ls-tree', '-r', '-t', '-l', '-z', sha], { maxBuffer: 1 << 30 })).stdout
      .split('\0')
      .filter(Boolean)
      .map((line) => {
        const [meta, entryPath] = line.split('\t') as [string, string];
        const [mode, type, objectId, size] = meta.split(/\s+/) as [string, string, string, string];
        return { path: entryPath, mode: mode.padStart(6, '0'), type, sha: objectId, ...(size !== '-' ? { size: Number(size) } : {}) };
      });
    for (const entry of tree) if (entry.type === 'blob') this.blobs.set(entry.sha, { gitDir, path: entry.path, symlink: entry.mode === '120000', fullName });
    let preparedTarball: string | undefined;
    if (options.prepareTarball) {
      // As GitHub's codeload has it ready: the download is then not held up by compressing on the fly.
      preparedTarball = `${gitDir}.tar.gz`;
      await run('git', ['-C', gitDir, 'archive', '--format=tar.gz', `--prefix=${owner}-${name}-${sha.slice(0, 7)}/`, '-o', preparedTarball, sha]);
    }
    const repository: StandInRepository = {
      owner,
      name,
      fullName,
      htmlUrl: `https://github.com/${fullName}`,
      private: options.private ?? false,
      sha,
      gitDir,
      tree,
      ...(preparedTarball ? { preparedTarball } : {}),
    };
    this.repositories.set(`${fullName}@${sha}`, repository);
    if (options.branch !== null) this.branches.set(`${fullName}@${options.branch ?? 'main'}`, sha);
    return repository;
  }

  /** A pull request as GitHub holds it now: its head, its labels, open or closed. */
  setPullRequest(fullName: string, number: number, pullRequest: { state?: 'open' | 'closed'; headSha: string; labels?: string[] }): void {
    this.pullRequests.set(`${fullName}#${number}`, { state: pullRequest.state ?? 'open', headSha: pullRequest.headSha, labels: pullRequest.labels ?? [] });
  }

  /** What `login` may do in the repository (GitHub's collaborator permission; anyone else: read on a public repository). */
  setPermission(fullName: string, login: string, permission: 'admin' | 'write' | 'read' | 'none'): void {
    this.permissions.set(`${fullName}@${login.toLowerCase()}`, permission);
  }

  /** The next `count` requests whose path matches answer `status` instead. */
  failNext(pattern: RegExp, status: number, count: number): void {
    this.failures.push({ pattern, status, remaining: count });
  }

  /**
   * The next `count` requests whose path matches are refused by GitHub's rate limit, as GitHub refuses them:
   * `primary` (the hourly quota spent) is a 403 with `x-ratelimit-remaining: 0` and the reset time; `secondary`
   * (too many at once) a 429 with `retry-after`. Both wait `retryAfterS`.
   */
  rateLimitNext(pattern: RegExp, kind: 'primary' | 'secondary', count: number, retryAfterS: number): void {
    this.rateLimits.push({ pattern, kind, remaining: count, retryAfterS });
  }

  /**
   * Every download of this commit's tarball breaks off halfway through its bytes: `truncate` ends the
   * response cleanly, `reset` destroys the socket, `stall` sends nothing more until the client gives up.
   */
  breakTarball(sha: string, how: TarballBreak): void {
    this.brokenTarballs.set(sha, how);
  }

  /** Requests whose path matches get no answer until the stand-in closes: a GitHub that hangs. */
  hang(pattern: RegExp): void {
    this.hangs.push(pattern);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const served = await this.handleAppsAndRest(req, res);
    if (!served) sendJson(res, 404, { message: 'Not Found' });
  }

  private async handleAppsAndRest(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', this.url);
    const recorded: RecordedRequest = { method: req.method ?? 'GET', path: url.pathname + url.search, authorization: req.headers.authorization };
    this.requests.push(recorded);
    res.on('finish', () => (recorded.status = res.statusCode));
    if (this.hangs.some((pattern) => pattern.test(url.pathname))) return true; // no answer, ever
    const limited = this.rateLimits.find((candidate) => candidate.remaining > 0 && candidate.pattern.test(url.pathname));
    if (limited) {
      limited.remaining -= 1;
      this.refuseForRateLimit(res, limited.kind, limited.retryAfterS);
      return true;
    }
    const failure = this.failures.find((candidate) => candidate.remaining > 0 && candidate.pattern.test(url.pathname));
    if (failure) {
      failure.remaining -= 1;
      sendJson(res, failure.status, { message: 'stand-in failure' });
      return true;
    }
    const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => sendJson(res, status, body, headers);
    if (await this.apps.handle(req, res, url, answer, () => readJson(req), () => readForm(req))) return true;
    // GitHub answers 401 to a token it does not know, or one that expired (an App's installation token after its
    // hour, or revoked), whatever the path: the REST API's paths below are read with a valid token, or none.
    if (req.headers.authorization !== undefined && !url.pathname.startsWith('/codeload/') && !this.knownCredential(req)) {
      sendJson(res, 401, { message: 'Bad credentials', documentation_url: 'https://docs.github.com/rest', status: '401' });
      return true;
    }

    const status = url.pathname.match(/^\/repos\/[^/]+\/[^/]+\/statuses\/([0-9a-f]{40})$/);
    if (status && req.method === 'POST') {
      if (!this.authorized(req, statusRepository(url.pathname))) {
        sendJson(res, 404, { message: 'Not Found' });
        return true;
      }
      const posted = (await readJson(req)) as Record<string, string>;
      // GitHub's limit on a status's description.
      if ((posted.description ?? '').length > STATUS_DESCRIPTION_LIMIT) {
        sendJson(res, 422, {
          message: 'Validation Failed',
          errors: [{ resource: 'Status', code: 'custom', field: 'description', message: `description is too long (maximum is ${STATUS_DESCRIPTION_LIMIT} characters)` }],
          documentation_url: 'https://docs.github.com/rest/commits/statuses#create-a-commit-status',
        });
        return true;
      }
      this.statuses.set(status[1]!, [...(this.statuses.get(status[1]!) ?? []), posted]);
      sendJson(res, 201, { id: Date.now(), ...posted });
      return true;
    }
    const pull = url.pathname.match(/^\/repos\/([^/]+\/[^/]+)\/pulls\/([0-9]+)$/);
    if (pull && req.method === 'GET') {
      await this.servePullRequest(req, res, pull[1]!, Number(pull[2]));
      return true;
    }
    const permission = url.pathname.match(/^\/repos\/([^/]+\/[^/]+)\/collaborators\/([^/]+)\/permission$/);
    if (permission && req.method === 'GET') {
      await this.servePermission(req, res, permission[1]!, decodeURIComponent(permission[2]!));
      return true;
    }
    const deliveries = url.pathname.match(/^\/repos\/([^/]+\/[^/]+)\/hooks\/([0-9]+)\/deliveries(?:\/([0-9]+)\/attempts)?$/);
    if (deliveries) {
      await this.serveDeliveries(req, res, deliveries[1]!, Number(deliveries[2]), deliveries[3] === undefined ? undefined : Number(deliveries[3]));
      return true;
    }
    const hooks = url.pathname.match(/^\/repos\/([^/]+\/[^/]+)\/hooks(?:\/([0-9]+))?$/);
    if (hooks) {
      await this.serveHooks(req, res, hooks[1]!, hooks[2] === undefined ? undefined : Number(hooks[2]));
      return true;
    }
    const contents = url.pathname.match(/^\/repos\/([^/]+)\/([^/]+)\/contents\/(.+)$/);
    if (contents) {
      await this.serveContents(req, res, contents[1]!, contents[2]!, decodeURIComponent(contents[3]!), url.searchParams.get('ref') ?? '');
      return true;
    }
    const tree = url.pathname.match(/^\/repos\/([^/]+)\/([^/]+)\/git\/trees\/([0-9a-f]{40})$/);
    if (tree) {
      await this.serveTree(req, res, tree[1]!, tree[2]!, tree[3]!);
      return true;
    }
    const blob = url.pathname.match(/^\/repos\/([^/]+)\/([^/]+)\/git\/blobs\/([0-9a-f]{40})$/);
    if (blob) {
      await this.serveBlob(req, res, `${blob[1]}/${blob[2]}`, blob[3]!);
      return true;
    }
    const tarball = url.pathname.match(/^\/repos\/([^/]+)\/([^/]+)\/tarball\/([0-9a-f]{40})$/);
    if (tarball) {
      await this.redirectToCodeload(req, res, tarball[1]!, tarball[2]!, tarball[3]!);
      return true;
    }
    const codeload = url.pathname.match(/^\/codeload\/([^/]+)\/([^/]+)\/legacy\.tar\.gz\/([0-9a-f]{40})$/);
    if (codeload) {
      await this.serveTarball(res, codeload[1]!, codeload[2]!, codeload[3]!, url.searchParams.get('token'));
      return true;
    }
    return false;
  }

  /** GET /repos/{owner}/{repo}/pulls/{number}: the fields GitHub sends that matter here, in GitHub's shapes. */
  private servePullRequest(req: IncomingMessage, res: ServerResponse, fullName: string, number: number) {
    const pullRequest = this.pullRequests.get(`${fullName}#${number}`);
    const repository = [...this.repositories.values()].find((candidate) => candidate.fullName === fullName);
    if (!pullRequest || !repository || (repository.private && !this.authorized(req, fullName))) return sendJson(res, 404, { message: 'Not Found' });
    return sendJson(res, 200, {
      number,
      state: pullRequest.state,
      head: { sha: pullRequest.headSha },
      labels: pullRequest.labels.map((name, index) => ({ id: index + 1, name, color: 'ededed', default: false })),
    });
  }

  /**
   * GET /repos/{owner}/{repo}/collaborators/{username}/permission, as GitHub answers it: only with a token (401
   * otherwise); `permission` is admin, write, read or none (maintain reads as write, triage as read), `role_name` the role.
   */
  private servePermission(req: IncomingMessage, res: ServerResponse, fullName: string, login: string) {
    if (!this.authorized(req, fullName)) {
      return sendJson(res, 401, { message: 'Requires authentication', documentation_url: 'https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user' });
    }
    const permission = this.permissions.get(`${fullName}@${login.toLowerCase()}`) ?? 'read';
    return sendJson(res, 200, { permission, role_name: permission, user: { login } });
  }

  /** GET, POST, PATCH, DELETE /repos/{owner}/{repo}/hooks[/{id}]; like GitHub, only for the token's bearer. */
  private async serveHooks(req: IncomingMessage, res: ServerResponse, fullName: string, id: number | undefined) {
    if (!this.token || req.headers.authorization !== `Bearer ${this.token}`) return sendJson(res, 404, { message: 'Not Found' });
    const list = this.hooks.get(fullName) ?? [];
    this.hooks.set(fullName, list);
    const masked = (hook: StoredHook) => ({ ...hook, config: { ...hook.config, secret: hook.config.secret ? '********' : undefined } });
    const body = ['POST', 'PATCH'].includes(req.method ?? '') ? ((await readJson(req)) as Partial<StoredHook>) : {};
    if (id === undefined && req.method === 'GET') {
      // Numbered pages, as GitHub pages hooks: `per_page` (30, at most 100) and `page`, with a Link header.
      const url = new URL(req.url ?? '/', this.url);
      const perPage = pageSize(url);
      const page = Math.max(1, Number(url.searchParams.get('page') ?? 1) || 1);
      const last = Math.max(1, Math.ceil(list.length / perPage));
      const link = (n: number) => { const next = new URL(url); next.searchParams.set('page', String(n)); next.searchParams.set('per_page', String(perPage)); return next.href; };
      const links = [...(page < last ? [`<${link(page + 1)}>; rel="next"`, `<${link(last)}>; rel="last"`] : []), ...(page > 1 ? [`<${link(1)}>; rel="first"`, `<${link(page - 1)}>; rel="prev"`] : [])];
      return sendJson(res, 200, list.slice((page - 1) * perPage, page * perPage).map(masked), links.length > 0 ? { link: links.join(', ') } : {});
    }
    if (id === undefined && req.method === 'POST') {
      const hook: StoredHook = { id: this.nextHookId++, name: 'web', active: body.active ?? true, events: body.events ?? ['push'], config: body.config! };
      list.push(hook);
      return sendJson(res, 201, masked(hook));
    }
    const hook = list.find((candidate) => candidate.id === id);
    if (!hook) return sendJson(res, 404, { message: 'Not Found' });
    if (req.method === 'PATCH') {
      Object.assign(hook, { active: body.active ?? hook.active, events: body.events ?? hook.events, config: { ...hook.config, ...body.config } });
      return sendJson(res, 200, masked(hook));
    }
    if (req.method === 'DELETE') {
      list.splice(list.indexOf(hook), 1);
      res.writeHead(204).end();
      return;
    }
    return sendJson(res, 405, { message: 'Method Not Allowed' });
  }

  /**
   * Sends an event to the repository's hooks that take it, signed with each hook's secret, as GitHub does; every
   * attempt is recorded, answered or not. Returns the status codes (0: no answer).
   */
  async deliver(fullName: string, event: string, payload: Record<string, unknown>, guid: string = randomUUID()): Promise<number[]> {
    const hooks = (this.hooks.get(fullName) ?? []).filter((hook) => hook.active && (hook.events.includes(event) || hook.events.includes('*')));
    const codes: number[] = [];
    for (const hook of hooks) codes.push(await this.attempt(hook, { guid, event, action: typeof payload.action === 'string' ? payload.action : null, body: JSON.stringify(payload) }, false));
    return codes;
  }

  private async attempt(hook: StoredHook, delivery: Pick<HookDelivery, 'guid' | 'event' | 'action' | 'body'>, redelivery: boolean): Promise<number> {
    const { statusCode, status } = await postDelivery(hook.config.url, hook.config.secret ?? '', delivery);
    const list = this.deliveries.get(hook.id) ?? [];
    this.deliveries.set(hook.id, list);
    list.push({ ...delivery, id: this.nextDeliveryId++, delivered_at: new Date().toISOString(), redelivery, status_code: statusCode, status });
    return statusCode;
  }

  /** GET /repos/{o}/{r}/hooks/{id}/deliveries (newest first, no bodies) and POST …/deliveries/{id}/attempts. */
  private async serveDeliveries(req: IncomingMessage, res: ServerResponse, fullName: string, hookId: number, deliveryId: number | undefined) {
    if (!this.token || req.headers.authorization !== `Bearer ${this.token}`) return sendJson(res, 404, { message: 'Not Found' });
    const hook = (this.hooks.get(fullName) ?? []).find((candidate) => candidate.id === hookId);
    if (!hook) return sendJson(res, 404, { message: 'Not Found' });
    const list = this.deliveries.get(hookId) ?? [];
    if (deliveryId === undefined && req.method === 'GET') {
      // Cursor pages, as GitHub pages hook deliveries: `per_page` (30, at most 100), the next page's `cursor` in
      // the Link header's rel="next" URL (GitHub's cursors are opaque; here, the id the next page starts below).
      const url = new URL(req.url ?? '/', this.url);
      const perPage = pageSize(url);
      const cursor = url.searchParams.get('cursor');
      const newestFirst = [...list].reverse().filter((delivery) => cursor === null || delivery.id < Number(cursor));
      const page = newestFirst.slice(0, perPage);
      const next = newestFirst.length > perPage ? new URL(url) : undefined;
      next?.searchParams.set('cursor', String(page[page.length - 1]!.id));
      next?.searchParams.set('per_page', String(perPage));
      return sendJson(res, 200, page.map(({ body: _body, ...listed }) => listed), next ? { link: `<${next.href}>; rel="next"` } : {});
    }
    const original = list.find((candidate) => candidate.id === deliveryId);
    if (!original || req.method !== 'POST') return sendJson(res, 404, { message: 'Not Found' });
    // GitHub answers at once and delivers afterwards.
    sendJson(res, 202, {});
    void this.attempt(hook, original, true);
  }

  private refuseForRateLimit(res: ServerResponse, kind: 'primary' | 'secondary', retryAfterS: number): void {
    const reset = String(Math.ceil(Date.now() / 1000) + retryAfterS);
    if (kind === 'primary') {
      return sendJson(
        res,
        403,
        { message: 'API rate limit exceeded for installation. Check out the documentation for more details.', documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api' },
        { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-used': '5000', 'x-ratelimit-reset': reset, 'x-ratelimit-resource': 'core' },
      );
    }
    return sendJson(
      res,
      429,
      { message: 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.', documentation_url: 'https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits' },
      { 'retry-after': String(retryAfterS), 'x-ratelimit-remaining': '4000', 'x-ratelimit-reset': reset },
    );
  }

  /** The personal token, or an App installation's token that may act on the repository (while it lives). */
  private authorized(req: IncomingMessage, fullName: string): boolean {
    return (this.token !== undefined && req.headers.authorization === `Bearer ${this.token}`) || this.apps.mayActOn(req, fullName);
  }

  /** The personal token, or an installation token GitHub issued that has not expired. */
  private knownCredential(req: IncomingMessage): boolean {
    if (this.token !== undefined && req.headers.authorization === `Bearer ${this.token}`) return true;
    return this.apps.issued(req)?.live === true;
  }

  /** A codeload URL's token: the one it was issued for. */
  private tokenMayRead(token: string | null, fullName: string): boolean {
    if (!token) return false;
    return token === this.token || this.apps.mayActOn({ headers: { authorization: `Bearer ${token}` } } as IncomingMessage, fullName);
  }

  private knows(owner: string, name: string): boolean {
    return [...this.repositories.values()].some((repository) => repository.fullName === `${owner}/${name}` && !repository.private);
  }

  /** The commit `ref` names as GitHub resolves it: a SHA, or a branch (`main`, `heads/main`, `refs/heads/main`); none: the default branch. */
  private visible(req: IncomingMessage, owner: string, name: string, ref: string): StandInRepository | undefined {
    const branch = ref === '' ? 'main' : ref.replace(/^(refs\/)?heads\//, '');
    const sha = /^[0-9a-f]{40}$/.test(ref) ? ref : this.branches.get(`${owner}/${name}@${branch}`);
    const repository = this.repositories.get(`${owner}/${name}@${sha}`);
    if (!repository) return undefined;
    if (repository.private && !this.authorized(req, `${owner}/${name}`)) return undefined;
    return repository;
  }

  private async serveContents(req: IncomingMessage, res: ServerResponse, owner: string, name: string, filePath: string, ref: string) {
    const repository = this.visible(req, owner, name, ref);
    if (!repository) return sendJson(res, 404, { message: this.knows(owner, name) && ref !== '' && !/^[0-9a-f]{40}$/.test(ref) ? `No commit found for the ref ${ref}` : 'Not Found' });
    let content: Buffer;
    try {
      content = (await run('git', ['-C', repository.gitDir, 'show', `${repository.sha}:${filePath}`], { encoding: 'buffer', maxBuffer: 1 << 30 })).stdout;
    } catch {
      return sendJson(res, 404, { message: 'Not Found' });
    }
    if (req.headers.accept === 'application/vnd.github.raw') {
      res.writeHead(200, { 'content-type': 'application/vnd.github.raw; charset=utf-8' });
      res.end(content);
      return;
    }
    return sendJson(res, 200, { type: 'file', path: filePath, encoding: 'base64', content: content.toString('base64') });
  }

  /** GET /repos/{owner}/{repo}/git/trees/{commit}?recursive=1. */
  private serveTree(req: IncomingMessage, res: ServerResponse, owner: string, name: string, sha: string) {
    const repository = this.visible(req, owner, name, sha);
    if (!repository) return sendJson(res, 404, { message: 'Not Found' });
    // GitHub lists at most 100,000 entries (and 7 MB) and says `truncated`; a test may lower the limit.
    const truncated = repository.tree.length > this.treeEntryLimit;
    return sendJson(res, 200, { sha, tree: truncated ? repository.tree.slice(0, this.treeEntryLimit) : repository.tree, truncated });
  }

  /** GET /repos/{owner}/{repo}/git/blobs/{id} with the raw media type, read from the committed work tree. */
  private async serveBlob(req: IncomingMessage, res: ServerResponse, fullName: string, blobId: string) {
    const blob = this.blobs.get(blobId);
    const visible = blob && blob.fullName === fullName && [...this.repositories.values()].some((repository) => repository.fullName === fullName && (!repository.private || this.authorized(req, fullName)));
    if (!blob || !visible) return sendJson(res, 404, { message: 'Not Found' });
    const file = path.join(blob.gitDir, blob.path);
    const content = blob.symlink ? Buffer.from(await readlink(file)) : await readFile(file);
    // Raw bytes only for the raw media types; otherwise GitHub's JSON with the content in base64.
    if (/application\/vnd\.github\.raw(\+json)?/.test(req.headers.accept ?? '')) {
      res.writeHead(200, { 'content-type': 'application/vnd.github.raw; charset=utf-8' });
      res.end(content);
      return;
    }
    return sendJson(res, 200, { sha: blobId, node_id: `B_${blobId.slice(0, 12)}`, size: content.length, url: `${this.url}/repos/${fullName}/git/blobs/${blobId}`, content: content.toString('base64'), encoding: 'base64' });
  }

  private redirectToCodeload(req: IncomingMessage, res: ServerResponse, owner: string, name: string, sha: string) {
    const repository = this.visible(req, owner, name, sha);
    if (!repository) return sendJson(res, 404, { message: 'Not Found' });
    if (repository.preparedTarball && this.preparedTarballServer && !repository.private) {
      res.writeHead(302, { location: `${this.preparedTarballServer}/${path.basename(repository.preparedTarball)}` });
      res.end();
      return;
    }
    const token = repository.private ? `?token=${encodeURIComponent(bearerOf(req) ?? '')}` : '';
    res.writeHead(302, { location: `${this.url}/codeload/${owner}/${name}/legacy.tar.gz/${sha}${token}` });
    res.end();
  }

  private serveTarball(res: ServerResponse, owner: string, name: string, sha: string, token: string | null) {
    const repository = this.repositories.get(`${owner}/${name}@${sha}`);
    if (!repository || (repository.private && !this.tokenMayRead(token, `${owner}/${name}`))) return sendJson(res, 404, { message: 'Not Found' });
    const prefix = `${owner}-${name}-${sha.slice(0, 7)}/`;
    const broken = this.brokenTarballs.get(sha);
    if (broken) return this.serveBrokenTarball(res, repository, prefix, broken);
    res.writeHead(200, { 'content-type': 'application/x-gzip', 'content-disposition': `attachment; filename=${prefix.slice(0, -1)}.tar.gz` });
    if (repository.preparedTarball) {
      // Large reads: this stand-in shares the machine with the daemon and the engine, unlike GitHub.
      createReadStream(repository.preparedTarball, { highWaterMark: 1024 * 1024 }).pipe(res);
      return;
    }
    const archive = spawn('git', ['-C', repository.gitDir, 'archive', '--format=tar.gz', `--prefix=${prefix}`, sha]);
    archive.stdout.pipe(res);
    res.on('close', () => archive.kill());
  }

  private async serveBrokenTarball(res: ServerResponse, repository: StandInRepository, prefix: string, how: TarballBreak) {
    const archive = (await run('git', ['-C', repository.gitDir, 'archive', '--format=tar.gz', `--prefix=${prefix}`, repository.sha], { encoding: 'buffer', maxBuffer: 1 << 30 })).stdout;
    res.writeHead(200, { 'content-type': 'application/x-gzip' });
    res.write(archive.subarray(0, Math.floor(archive.length / 2)));
    if (how === 'truncate') res.end();
    else if (how === 'reset') setTimeout(() => res.socket?.resetAndDestroy(), 50);
  }
}

export type TarballBreak = 'truncate' | 'reset' | 'stall';

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function bearerOf(req: IncomingMessage): string | undefined {
  return /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
}

function statusRepository(pathname: string): string {
  const [, , owner, name] = pathname.split('/');
  return `${owner}/${name}`;
}

async function readJson(req: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
}

/** GitHub's page size: `per_page`, 30 by default, at most 100. */
function pageSize(url: URL): number {
  const asked = Number(url.searchParams.get('per_page') ?? 30) || 30;
  return Math.min(100, Math.max(1, asked));
}

/** A status's description: GitHub refuses one over 140 characters with a 422. */
const STATUS_DESCRIPTION_LIMIT = 140;
