import { statSync } from 'node:fs';

/**
 * In ci_service's image the process starts as root only to learn the Docker socket's group, which differs
 * between hosts, then runs as the unprivileged RUN_AS user (uid:gid) with that group added. Nobody types
 * the group's id. Returns what it did, for the start-up log; undefined when there was nothing to do.
 */
export function dropPrivileges(runAs: { uid: number; gid: number } | undefined, socketPath: string | undefined): string | undefined {
  const { getuid, setgroups, setgid, setuid } = process;
  // These exist on POSIX only; elsewhere there is nothing to drop.
  if (!runAs || !getuid || !setgroups || !setgid || !setuid || getuid() !== 0) return undefined;
  const groups = [runAs.gid];
  let socketGroup: number | undefined;
  if (socketPath) {
    try {
      socketGroup = statSync(socketPath).gid;
      groups.push(socketGroup);
    } catch {
      // No socket mounted: /healthz says the engine is not reachable, and how to fix it.
    }
  }
  setgroups(groups);
  setgid(runAs.gid);
  setuid(runAs.uid);
  return `running as ${runAs.uid}:${runAs.gid}${socketGroup === undefined ? '' : `, with the Docker socket's group ${socketGroup}`}`;
}
