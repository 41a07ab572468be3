/**
 * `--pin`: the relay under test (the bridge, or coturn) on CPU 0 and the load (the bench process
 * itself, the echo peer) on the other CPUs, as the figures were taken: "one core" is then
 * the relay's alone, and the load cannot take its time (nor the relay the load's).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** the CPU list of the relay under test */
export const RELAY_CPUS = '0';

/** the CPU list of the load: every CPU but the relay's (null: a single CPU, nothing to split) */
export function loadCpus(n = availableParallelism()): string | null {
  return n < 2 ? null : n === 2 ? '1' : `1-${n - 1}`;
}

/** `cmd args` run on `cpus` (taskset), or as they are when cpus is null */
export function onCpus(cpus: string | null, cmd: string, args: string[]): [string, string[]] {
  return cpus === null ? [cmd, args] : ['taskset', ['-c', cpus, cmd, ...args]];
}

/** The CPUs process `pid` may run on, as the kernel says (/proc/<pid>/status), e.g. "0" or "0-1". */
export function cpusOf(pid: number | 'self'): string {
  return /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '?';
}

/** Moves every thread of this process to `cpus` (threads started later inherit it); returns the undo. */
export function pinSelf(cpus: string): () => void {
  const before = cpusOf('self');
  const set = (list: string): void => {
    execFileSync('taskset', ['-a', '-cp', list, String(process.pid)], { stdio: 'ignore' });
  };
  set(cpus);
  return () => set(before);
}
