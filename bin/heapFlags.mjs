/**
 * V8's heap options for the bridge's processes. Node and V8 read them only at process start:
 * `confmux serve` (bin/confmux.mjs) re-executes itself with those that were not given, the
 * primary passes them on to its workers (server.workers > 1), and the bench and the soak give them
 * to the bridge they start. An option given on the command line (or, where node allows it, in
 * NODE_OPTIONS) wins over ours.
 *
 * - `--max-semi-space-size=1`: the young generation. Node lets each of its two semi-spaces grow to
 *   16 MB when the allocation rate is high (while terminals connect, or on the JavaScript media
 *   path) and keeps them there: up to 32 MB of RSS that measures the allocation rate, not the
 *   terminals, up to 32 kB per terminal at 1,000. The bridge's live heap in a call is about 15 kB
 *   per terminal (docs/performance.md, "Memory per terminal in a call"). v8.setFlagsFromString
 *   in a running process leaves the limit it started with (checked on Node 20).
 * - `--heap-growing-percent=25`: how far the old generation may grow past what the last full
 *   collection kept before the next one starts. V8 picks 1.1 to 4 times by itself; a burst of
 *   set-ups (1,000 terminals connecting within 2 s) promotes their garbage into it, which it then
 *   holds for the 10 to 20 s until its memory reducer runs. At 1.25 times it collects sooner: the
 *   peak fell from 22 to 31 kB per terminal to 17 to 20 (docs/performance.md, "Seventh round").
 *   Node does not take it in NODE_OPTIONS.
 */

const OPTIONS = [
  { flag: '--max-semi-space-size=1', pattern: /^--max[-_]semi[-_]space[-_]size(=|$)/, inNodeOptions: true },
  { flag: '--heap-growing-percent=25', pattern: /^--heap[-_]growing[-_]percent(=|$)/, inNodeOptions: false },
];

/** the node options the bridge runs with when none of them is given */
export const HEAP_FLAGS = OPTIONS.map((o) => o.flag);

const list = (options) => (Array.isArray(options) ? options : options.split(/\s+/));

/**
 * The options the bridge needs that these node options (argv style, and a NODE_OPTIONS string)
 * leave out: what `confmux serve` re-executes itself with.
 */
export function missingHeapFlags(execArgv = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? '') {
  return OPTIONS.filter((o) => !list(execArgv).some((a) => o.pattern.test(a)) && !(o.inNodeOptions && list(nodeOptions).some((a) => o.pattern.test(a)))).map((o) => o.flag);
}

/**
 * The node options that give a bridge process started from here (a worker, the bench's bridge)
 * the same heap: for each option, this process's own when `execArgv` has it; none when
 * NODE_OPTIONS has it (the child inherits the environment, and a command-line flag would override
 * it); else ours.
 */
export function heapArgs(execArgv = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? '') {
  const args = [];
  for (const o of OPTIONS) {
    const own = list(execArgv).filter((a) => o.pattern.test(a));
    if (own.length > 0) args.push(...own);
    else if (!(o.inNodeOptions && list(nodeOptions).some((a) => o.pattern.test(a)))) args.push(o.flag);
  }
  return args;
}
