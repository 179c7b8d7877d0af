import type Dockerode from 'dockerode';
import type { Readable } from 'node:stream';
import { describeError, ImageBuildError, PushError } from '../errors.js';
import { readProgress } from './progress.js';
import type { ImageBuilder, ImageBuildOptions, ImagePusher } from './run-build.js';

export interface RegistryAuth {
  username: string;
  password: string;
  serveraddress: string;
}

/** Failures that may pass if tried again: the engine or the registry was not there for a moment. */
const TRANSIENT =
  /ECONNREFUSED|ECONNRESET|ENOENT|EPIPE|ETIMEDOUT|EAI_AGAIN|connection refused|connection reset|i\/o timeout|no such host|timeout|\b5\d\d\b|internal server error|bad gateway|too many requests|unavailable|blob unknown/i;

/** The Docker engine behind the ImageBuilder and ImagePusher ports, through dockerode. */
export class DockerEngine implements ImageBuilder, ImagePusher {
  constructor(
    private readonly docker: Dockerode,
    private readonly auth: RegistryAuth | undefined,
  ) {}

  async ping(): Promise<void> {
    try {
      await this.docker.ping();
    } catch (error) {
      throw engineFailure(error, 'build');
    }
  }

  async build(context: Readable, options: ImageBuildOptions, onLog: (text: string) => void, signal: AbortSignal): Promise<void> {
    let stream: NodeJS.ReadableStream;
    try {
      // The engine takes `t` once per tag and dockerode repeats arrays in the query; @types/dockerode says string.
      stream = await this.docker.buildImage(context, {
        t: options.tags as unknown as string,
        dockerfile: options.dockerfile,
        buildargs: options.buildArgs,
        labels: options.labels,
        rm: true,
        forcerm: true,
        abortSignal: signal,
      });
    } catch (error) {
      throw engineFailure(error, 'build');
    }
    const outcome = await readProgress(stream as Readable, onLog).catch((error: unknown) => {
      throw engineFailure(error, 'build');
    });
    if (outcome.error !== undefined) throw new ImageBuildError(`docker build failed: ${outcome.error}`);
  }

  async push(repository: string, tag: string, onLog: (text: string) => void, signal: AbortSignal): Promise<string> {
    const reference = `${repository}:${tag}`;
    let stream: NodeJS.ReadableStream;
    try {
      // The engine answers 400 without an X-Registry-Auth header, so an anonymous push sends `{}`.
      stream = (await this.docker.getImage(repository).push({ tag, authconfig: this.auth ?? {}, abortSignal: signal })) as NodeJS.ReadableStream;
    } catch (error) {
      throw engineFailure(error, 'push', reference);
    }
    const outcome = await readProgress(stream as Readable, onLog).catch((error: unknown) => {
      throw engineFailure(error, 'push', reference);
    });
    if (outcome.error !== undefined) {
      throw new PushError(
        `pushing ${reference} failed: ${outcome.error} (is the registry running, and reachable from the Docker engine at that address?)`,
        TRANSIENT.test(outcome.error),
      );
    }
    const digest = outcome.aux.map((aux) => aux.Digest).find((value) => typeof value === 'string');
    if (typeof digest !== 'string') throw new PushError(`pushing ${reference} ended without a digest from the registry`, true);
    return digest;
  }
}

function engineFailure(error: unknown, stage: 'build' | 'push', reference?: string): Error {
  if (error instanceof Error && error.name === 'AbortError') return error;
  const detail = engineMessage(error);
  const denied = /EACCES/.test(detail);
  const unreachable = denied || /ECONNREFUSED|ENOENT|socket hang up/.test(detail);
  const message = denied
    ? `Docker engine socket refused (${detail}): give ci_service the socket's group (DOCKER_GID in .env: stat -c %g /var/run/docker.sock)`
    : unreachable
    ? `Docker engine not reachable (${detail}): is dockerd running, and DOCKER_HOST (or the mounted /var/run/docker.sock) right?`
    : stage === 'build'
      ? `docker build failed: ${detail}`
      : `pushing ${reference} failed: ${detail}`;
  const retryable = unreachable || TRANSIENT.test(detail);
  return stage === 'build' ? new ImageBuildError(message, retryable) : new PushError(message, retryable);
}

/** dockerode puts the engine's own sentence in `json.message`; its `message` adds HTTP noise. */
function engineMessage(error: unknown): string {
  const json = (error as { json?: { message?: unknown } } | undefined)?.json;
  if (json && typeof json.message === 'string') return json.message.trim();
  return describeError(error);
}
