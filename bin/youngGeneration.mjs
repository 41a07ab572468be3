/**
 * V8's young generation for the bridge's processes.
 *
 * Node lets each of the young generation's two semi-spaces grow to 16 MB when the allocation
 * rate is high (while terminals connect, or on the JavaScript media path) and keeps them there:
 * up to 32 MB of RSS that measures the allocation rate, not the terminals. The bridge's live heap
 * in a call is about 15 kB per terminal (docs/performance.md, "Memory per terminal in a call"), so
 * at 1,000 terminals that headroom alone was up to 32 kB per terminal. The bridge runs with each semi-space bounded to
 * 1 MB: `confmux serve` (bin/confmux.mjs) re-executes itself with the flag when it was not given,
 * the primary passes it on to its workers (server.workers > 1), and the bench gives it to the
 * bridge it starts (bench/run.ts). A --max-semi-space-size given on the command line or in
 * NODE_OPTIONS wins (Node's own default: `--max-semi-space-size=16`).
 *
 * The flag takes effect only at process start: v8.setFlagsFromString('--max-semi-space-size=1')
 * in a running process leaves the limit it started with (checked on Node 20: the new space still
 * grows to 32 MB).
 */

/** node options that bound the young generation: 1 MB per semi-space */
export const YOUNG_GENERATION_FLAGS = ['--max-semi-space-size=1'];

const FLAG = /^--max[-_]semi[-_]space[-_]size(=|$)/;

/** Whether these node options (argv style, or a NODE_OPTIONS string) set the semi-space size. */
function sets(options) {
  const list = Array.isArray(options) ? options : options.split(/\s+/);
  return list.some((o) => FLAG.test(o));
}

/** true when this process was started with the semi-space size set (command line or NODE_OPTIONS) */
export function youngGenerationGiven(execArgv = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? '') {
  return sets(execArgv) || sets(nodeOptions);
}

/**
 * The node options that give a bridge process started from here (a worker, the bench's bridge)
 * the same bound: the semi-space option of `execArgv` when it has one; none when NODE_OPTIONS has
 * one (the child inherits the environment, and a command-line flag would override it); else the
 * default.
 */
export function youngGenerationArgs(execArgv = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? '') {
  const own = execArgv.filter((a) => FLAG.test(a));
  if (own.length > 0) return own;
  if (sets(nodeOptions)) return [];
  return [...YOUNG_GENERATION_FLAGS];
}
