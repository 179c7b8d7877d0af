import type { FailedStep } from '../domain/errors.js';

/**
 * Pure: the engine's words for a failed build, made into a sentence that says where and what to change.
 * The sentence becomes the build's `error` and its commit status, so what matters most comes first.
 */


const LONGEST_INSTRUCTION = 80;
/** BuildKit 0.8 says `secret x not found: not found`, 0.13 `secret x: not found`. */
const SECRET_NOT_FOUND = /secret ([^\s:]+):? not found/;
const LONGEST_OUTPUT = 200;

/** `Dockerfile line 6: RUN make (exit code: 3); last output: missing header foo.h`. */
export function explainFailedStep(
  step: FailedStep,
  engineError: string,
  dockerfile: { path: string; text: string | undefined },
  /** Secret id → why this build was not handed it (a pull request's head): the reason a mount found nothing. */
  withheld: Record<string, string> = {},
): string {
  const instruction = step.name.replace(/^\[[^\]]*\]\s*/, '');
  const base = /^load metadata for (\S+)$/.exec(instruction);
  if (base && /no match for platform in manifest/.test(engineError)) {
    return `the base image ${base[1]} has no image for this platform (${shortReason(engineError)}): choose a base image published for every platform of "platforms" in dockerInfo.json (docker manifest inspect ${base[1]} lists them), or remove this platform`;
  }
  const line = dockerfile.text === undefined ? undefined : instructionLine(dockerfile.text, instruction);
  const where = line === undefined ? `${dockerfile.path}: ` : `${dockerfile.path} line ${line}: `;
  const output = step.lastOutput.join(' | ');
  const lastOutput = output ? `; last output: ${shorten(output, LONGEST_OUTPUT, 'end')}` : '';
  const secret = SECRET_NOT_FOUND.exec(engineError);
  const fix = !secret ? '' : Object.hasOwn(withheld, secret[1]!) ? `: ${withheld[secret[1]!]}` : `: ${undeclaredSecret(secret[1]!)}`;
  return `${where}${shorten(instruction, LONGEST_INSTRUCTION, 'start')} failed (${shortReason(engineError)})${lastOutput}${fix}`;
}

function undeclaredSecret(id: string): string {
  return `the Dockerfile mounts secret "${id}", which dockerInfo.json does not declare: add "secrets": {"${id}": "<VARIABLE>"} to dockerInfo.json, with <VARIABLE> granted to this repository in BUILD_SECRETS on ci_service`;
}

/** The engine's sentence for a failure outside a step (a parse error, a missing target), with how to fix it. */
export function explainEngineError(engineError: string): string {
  // BuildKit 0.13 says `dockerfile parse error on line 3`, 0.8 `… line 3`: said one way.
  const message = engineError
    .replace(/^failed to solve with frontend dockerfile\.v0: (failed to create LLB definition: )?/, '')
    .replace(/^dockerfile parse error on line/, 'dockerfile parse error line');
  const flag = /dockerfile parse error line (\d+): Unknown flag: (\S+)/i.exec(message);
  if (flag) {
    return `Dockerfile line ${flag[1]}: this engine's built-in Dockerfile frontend does not know --${flag[2]}: add "# syntax=docker/dockerfile:1" as the Dockerfile's first line (the engine then pulls a current frontend), or build on Docker 23 or newer`;
  }
  const target = /target stage "?([^"\s]+)"? could not be found/.exec(message);
  if (target) {
    return `"target" "${target[1]}" in dockerInfo.json is not a stage of the Dockerfile: name one of its "FROM … AS <stage>" stages`;
  }
  const secret = SECRET_NOT_FOUND.exec(message);
  if (secret) return undeclaredSecret(secret[1]!);
  if (/requires BuildKit|buildkit is required/i.test(message)) {
    return `${message}: this Dockerfile needs BuildKit; set BUILDER=buildkit (the default) on ci_service`;
  }
  if (/buildkit not supported|BuildKit is not supported|unsupported builder version/i.test(message)) {
    return `this Docker engine cannot build with BuildKit (${message}): set BUILDER=legacy on ci_service, or upgrade the engine`;
  }
  return message.replace(/^dockerfile parse error/, 'Dockerfile parse error');
}

/**
 * An error BuildKit gives without the Dockerfile's line (0.13 says `unsupported mount type "x"` where 0.8 named
 * the line), placed at its line when the Dockerfile shows where.
 */
export function locateInDockerfile(message: string, dockerfileText: string | undefined): string {
  const mount = /^unsupported mount type "([^"]+)"$/.exec(message);
  if (!mount || dockerfileText === undefined) return message;
  const index = dockerfileText.split(/\r?\n/).findIndex((line) => /^\s*RUN\b/i.test(line) && line.includes(`type=${mount[1]}`));
  return index === -1 ? message : `Dockerfile parse error line ${index + 1}: ${message}`;
}

/** The 1-based line of the Dockerfile where `instruction` starts, matching BuildKit's name for the step. */
export function instructionLine(dockerfileText: string, instruction: string): number | undefined {
  const wanted = normalise(instruction);
  const lines = dockerfileText.split(/\r?\n/);
  for (let start = 0; start < lines.length; start += 1) {
    // An instruction continues over lines that end in a backslash; BuildKit names it by the joined text.
    let text = lines[start]!;
    for (let next = start + 1; /\\\s*$/.test(text) && next < lines.length; next += 1) {
      text = text.replace(/\\\s*$/, ' ') + lines[next]!;
    }
    if (normalise(text) === wanted) return start + 1;
  }
  return undefined;
}

function normalise(text: string): string {
  const collapsed = text.trim().replace(/\s+/g, ' ');
  const space = collapsed.indexOf(' ');
  // Instructions are case-insensitive; BuildKit names them in upper case.
  return space === -1 ? collapsed.toUpperCase() : collapsed.slice(0, space).toUpperCase() + collapsed.slice(space);
}

/**
 * `executor failed running [/bin/sh -c make]: exit code: 2` says the command twice: keep what follows it. A COPY
 * of a missing file is said in the same words whatever BuildKit's version (0.8 and 0.13 word it differently).
 */
function shortReason(engineError: string): string {
  const missing = /failed to compute cache key: (?:failed to calculate checksum of ref \S+ )?"([^"]+)":? not found/.exec(engineError);
  if (missing) return `"${missing[1]}" is not in the build context, or .dockerignore leaves it out`;
  const secret = SECRET_NOT_FOUND.exec(engineError);
  if (secret) return `secret ${secret[1]} not found`;
  const executor = /^executor failed running \[.*\]: (.+)$/s.exec(engineError) ?? /^process ".*" did not complete successfully: (.+)$/s.exec(engineError);
  return executor ? executor[1]! : engineError;
}

function shorten(text: string, limit: number, keep: 'start' | 'end'): string {
  if (text.length <= limit) return text;
  return keep === 'start' ? `${text.slice(0, limit - 1)}…` : `…${text.slice(text.length - limit + 1)}`;
}
