import type { AxiosInstance } from 'axios';
import type { Logger } from 'pino';
import type { BuildObserver } from '../domain/build-observer.js';
import type { BuildRecord } from '../domain/build-record.js';
import type { Repository } from '../domain/build-request.js';
import { STATUS_CONTEXTS } from './commit-status.js';
import { answerDetail, expectAnswer, repositoryPath } from './github-client.js';

/** GitHub's limits on a check run's output (422 beyond them): 65,535 characters a field, 50 annotations a request. */
export const OUTPUT_FIELD_LIMIT = 65_535;
export const ANNOTATIONS_PER_REQUEST = 50;
/** How many of the log's last lines the check run shows. */
const LOG_TAIL_LINES = 60;

/** The button a running build's check run offers; GitHub sends its identifier back in a `requested_action` event. */
export const CANCEL_ACTION = { label: 'Cancel build', description: 'Stop this build on ci_service', identifier: 'cancel' } as const;

export interface CheckAnnotation {
  path: string;
  start_line: number;
  end_line: number;
  annotation_level: 'notice' | 'warning' | 'failure';
  title: string;
  message: string;
}

/** The conclusions of the finished statuses that need no reading of the failure. */
const CONCLUSIONS = { succeeded: 'success', cancelled: 'cancelled' } as const;

/**
 * Pure: where a failed build's sentence says the repository went wrong, as an annotation on that file and line.
 * The sentences are written by explainFailedStep and the spec's checks: `[<platform>: ]<Dockerfile path> line N: …`,
 * `Dockerfile parse error line N: …`, `dockerInfo.json…`.
 */
export function annotationsOf(build: BuildRecord): CheckAnnotation[] {
  if (build.status !== 'failed' || !build.error) return [];
  const error = build.error.replace(/^[a-z0-9]+\/[a-z0-9]+(?:\/[a-z0-9]+)?: /, '');
  const step = /^(\S+) line (\d+): /.exec(error) ?? /^(Dockerfile) parse error line (\d+): /.exec(error);
  if (build.failedStage === 'build' && step) {
    const line = Number(step[2]);
    return [{ path: step[1]!, start_line: line, end_line: line, annotation_level: 'failure', title: 'This step failed', message: clip(build.error, 64 * 1024) }];
  }
  if (build.failedStage === 'spec' && /dockerInfo\.json/.test(error)) {
    return [{ path: 'dockerInfo.json', start_line: 1, end_line: 1, annotation_level: 'failure', title: 'dockerInfo.json', message: clip(build.error, 64 * 1024) }];
  }
  return [];
}

/** Pure: the check run GitHub shows for a build, in the Checks API's fields (annotations aside), from its whole log. */
export function checkRunFor(build: BuildRecord, publicUrl: string | undefined, log: string[]) {
  const logTail = log.slice(-LOG_TAIL_LINES);
  const base = {
    name: STATUS_CONTEXTS[build.request.trigger.kind],
    head_sha: build.request.sha,
    external_id: build.id,
    ...(publicUrl ? { details_url: `${publicUrl}/builds/${build.id}` } : {}),
  };
  if (build.status === 'queued') return { ...base, status: 'queued' as const, output: { title: 'Queued', summary: 'Waiting for a build host.' } };
  if (build.status === 'running') {
    return {
      ...base,
      status: 'in_progress' as const,
      ...(build.startedAt ? { started_at: build.startedAt.toISOString() } : {}),
      output: { title: 'Building', summary: `Building on ${build.worker ?? 'a build host'}.` },
      actions: [CANCEL_ACTION],
    };
  }
  const timedOut = build.status === 'failed' && build.failedStage === 'timeout';
  const conclusion = timedOut ? 'timed_out' : build.status === 'failed' ? 'failure' : CONCLUSIONS[build.status];
  return {
    ...base,
    status: 'completed' as const,
    conclusion,
    completed_at: (build.finishedAt ?? new Date()).toISOString(),
    output: {
      title: clip(titleOf(build), 200),
      summary: clip(summaryOf(build, log), OUTPUT_FIELD_LIMIT),
      ...(logTail.length > 0 ? { text: tailText(logTail) } : {}),
    },
    actions: [],
  };
}

function titleOf(build: BuildRecord): string {
  if (build.status === 'succeeded') return build.digest ? `Pushed ${build.image ?? 'the image'} (${build.digest.slice(0, 19)})` : 'The image builds (nothing pushed)';
  if (build.status === 'cancelled') return `Cancelled: ${build.error ?? 'by hand'}`;
  return build.error ?? 'The build failed';
}

function summaryOf(build: BuildRecord, log: string[]): string {
  // BuildKit's steps served from the cache, as the log shows them (`#5 CACHED`); the legacy builder's `Using cache`.
  const cached = log.filter((line) => /^#\d+ CACHED$/.test(line) || line.trim() === '---> Using cache').length;
  const seconds = build.startedAt && build.finishedAt ? Math.round((build.finishedAt.getTime() - build.startedAt.getTime()) / 1000) : undefined;
  const rows: [string, string | undefined][] = [
    ['Image', build.image],
    ['Digest', build.digest],
    ['Tags', build.tags.length > 0 ? build.tags.join(', ') : undefined],
    ['Platforms', build.platforms?.map((platform) => `${platform.platform} (${platform.how}${platform.worker ? ` on ${platform.worker}` : ''})`).join(', ')],
    ['Duration', seconds === undefined ? undefined : `${seconds} s`],
    ['Cache', log.length > 0 ? `${cached} ${cached === 1 ? 'step' : 'steps'} from the build cache` : undefined],
    ['Worker', build.worker],
    ['Engine', build.engine],
    ['Failed at', build.failedStage],
  ];
  const table = rows.filter(([, value]) => value).map(([name, value]) => `| ${name} | ${escapeCell(value!)} |`);
  return table.length > 0 ? ['| | |', '| --- | --- |', ...table].join('\n') : 'No details.';
}

/** The log's last lines in a code block, cut from the start to fit GitHub's limit. */
function tailText(lines: string[]): string {
  const fence = '```';
  let body = lines.join('\n').replaceAll(fence, "'''");
  const room = OUTPUT_FIELD_LIMIT - 200;
  if (body.length > room) body = `…${body.slice(body.length - room)}`;
  return `The log's last ${lines.length} lines (the whole log is on the build's page):\n\n${fence}\n${body}\n${fence}`;
}

function escapeCell(value: string): string {
  return value.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function clip(text: string, limit: number): string {
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/**
 * Each build as a check run on its commit (GitHub App mode): created when it is queued, `in_progress` with a Cancel
 * button while it runs, `completed` with its conclusion, the log's last lines and the failing line annotated. The
 * run is found again by its `external_id` (the build's id), so any server or worker may update it. A request GitHub
 * refuses is logged, never fatal: the build goes on.
 */
export class CheckRunReporter implements BuildObserver {
  /** Build id → its check run's id on GitHub. */
  private readonly runIds = new Map<string, number>();
  /** Each build's updates in order: a build's `queued` and `started` arrive together, and must not make two runs. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(
    private readonly github: AxiosInstance,
    private readonly publicUrl: string | undefined,
    /** The build's whole log (its tail is shown; its cache use counted). */
    private readonly logOf: (buildId: string) => Promise<string[]>,
    private readonly logger: Logger,
  ) {}

  queued(build: BuildRecord): Promise<void> {
    return this.inOrder(build, () => this.send(build, []));
  }

  started(build: BuildRecord): Promise<void> {
    return this.inOrder(build, () => this.send(build, []));
  }

  finished(build: BuildRecord): Promise<void> {
    return this.inOrder(build, async () => {
      await this.send(build, await this.logOf(build.id).catch(() => []));
      this.runIds.delete(build.id);
    });
  }

  /** A fork's pull request that waits for a maintainer: a check run that says how to allow it. */
  async held(repository: Repository, sha: string, description: string): Promise<void> {
    const body = {
      name: STATUS_CONTEXTS.pull_request,
      head_sha: sha,
      status: 'completed',
      // GitHub requires a details_url for action_required; without PUBLIC_URL the run is neutral.
      conclusion: this.publicUrl ? 'action_required' : 'neutral',
      ...(this.publicUrl ? { details_url: this.publicUrl } : {}),
      output: { title: 'Waiting for a maintainer', summary: clip(description, OUTPUT_FIELD_LIMIT) },
    };
    const response = await this.github.post(`/repos/${repositoryPath(repository)}/check-runs`, body, { timeout: 10_000 }).catch(failed);
    if (response.status !== 201) this.refused(response, { repository: repository.fullName, sha }, 'could not create the check run of a held pull request');
  }

  private inOrder(build: BuildRecord, update: () => Promise<void>): Promise<void> {
    const next = (this.chains.get(build.id) ?? Promise.resolve()).then(update, update);
    this.chains.set(build.id, next);
    void next.finally(() => {
      if (this.chains.get(build.id) === next) this.chains.delete(build.id);
    });
    return next;
  }

  private async send(build: BuildRecord, log: string[]): Promise<void> {
    const repository = build.request.repository;
    const run = checkRunFor(build, this.publicUrl, log);
    const annotations = annotationsOf(build);
    const fields = { buildId: build.id, status: run.status };
    const id = this.runIds.get(build.id) ?? (await this.findRun(build));
    const first = annotations.slice(0, ANNOTATIONS_PER_REQUEST);
    const body = { ...run, output: { ...run.output, ...(first.length > 0 ? { annotations: first } : {}) } };
    const response =
      id === undefined
        ? await this.github.post(`/repos/${repositoryPath(repository)}/check-runs`, body, { timeout: 10_000 }).catch(failed)
        : await this.github.patch(`/repos/${repositoryPath(repository)}/check-runs/${id}`, body, { timeout: 10_000 }).catch(failed);
    if (response.status !== 200 && response.status !== 201) return this.refused(response, fields, 'could not update the check run');
    const runId = (response.data as { id?: number }).id ?? id;
    if (runId !== undefined) this.runIds.set(build.id, runId);
    // GitHub adds annotations across updates: the rest go 50 at a time.
    for (let start = ANNOTATIONS_PER_REQUEST; start < annotations.length && runId !== undefined; start += ANNOTATIONS_PER_REQUEST) {
      const more = { output: { title: run.output.title, summary: run.output.summary, annotations: annotations.slice(start, start + ANNOTATIONS_PER_REQUEST) } };
      const added = await this.github.patch(`/repos/${repositoryPath(repository)}/check-runs/${runId}`, more, { timeout: 10_000 }).catch(failed);
      if (added.status !== 200) return this.refused(added, fields, 'could not add annotations to the check run');
    }
  }

  /** The build's check run made by another process (or before a restart), by its external_id. */
  private async findRun(build: BuildRecord): Promise<number | undefined> {
    const repository = build.request.repository;
    const response = await this.github
      .get<{ check_runs?: { id: number; external_id?: string }[] }>(`/repos/${repositoryPath(repository)}/commits/${build.request.sha}/check-runs`, {
        params: { check_name: STATUS_CONTEXTS[build.request.trigger.kind], filter: 'all', per_page: 100 },
        timeout: 10_000,
      })
      .catch(failed);
    if (response.status !== 200) return undefined;
    return (response.data as { check_runs?: { id: number; external_id?: string }[] }).check_runs?.find((run) => run.external_id === build.id)?.id;
  }

  private refused(response: { status: number; data?: unknown; statusText?: string }, fields: Record<string, unknown>, message: string): void {
    const errors = (response.data as { errors?: unknown } | undefined)?.errors;
    const detail = `${answerDetail(response).slice(2, -1)}${Array.isArray(errors) ? ` ${JSON.stringify(errors).slice(0, 500)}` : ''}`;
    const hint = response.status === 403 ? ' (the GitHub App needs "Checks: read and write")' : response.status === 422 ? ' (GitHub refused its fields)' : '';
    this.logger.warn({ ...fields, status: response.status, reason: detail }, `${message}${hint}`);
  }
}

function failed(error: unknown) {
  return { status: 0, statusText: error instanceof Error ? error.message : String(error), data: undefined as unknown };
}

/**
 * The builds a check suite's runs show (their external_ids), as GitHub lists the suite's runs: what a suite's
 * Re-run builds again. Throws when GitHub does not answer 200.
 */
export async function buildsOfCheckSuite(github: AxiosInstance, repository: Repository, checkSuiteId: number, signal: AbortSignal): Promise<string[]> {
  const response = await github.get<{ check_runs?: { external_id?: string | null; app?: { id?: number } }[] }>(
    `/repos/${repositoryPath(repository)}/check-suites/${checkSuiteId}/check-runs`,
    { params: { filter: 'latest', per_page: 100 }, signal },
  );
  expectAnswer(response, [200], `the check runs of suite ${checkSuiteId} in ${repository.fullName}`);
  return [...new Set((response.data.check_runs ?? []).flatMap((run) => (run.external_id ? [run.external_id] : [])))];
}
