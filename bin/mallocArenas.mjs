/**
 * glibc's malloc arenas for the bridge's processes.
 *
 * glibc gives threads that contend for malloc arenas of their own, up to 8 per core, and keeps
 * what they freed resident. In the bridge those threads are V8's (its compilers and garbage
 * collector work in the background while terminals connect), libuv's pool and the media pump's.
 * Measured with 1,000 terminals in calls on chan_websocket legs (docs/performance.md, "Sixth
 * round"): the other arenas held about 15 MB once the terminals had connected, most of it grown
 * while they connected and kept for the process's life. With MALLOC_ARENA_MAX=2 all of malloc's
 * memory came to about 12 MB instead of 23, the bridge was 5.7 MB smaller, and its user-space
 * CPU did not move (the relay thread does not allocate per packet).
 *
 * `confmux serve` (bin/confmux.mjs) runs the bridge with MALLOC_ARENA_MAX=2 unless the environment
 * sets it (glibc reads it only at process start); its workers and the bench's bridge inherit it.
 * Other C libraries ignore the variable.
 */

/** the bridge's MALLOC_ARENA_MAX unless the environment sets one */
export const MALLOC_ARENAS = '2';

/** true when the environment sets MALLOC_ARENA_MAX (to anything: the operator's value wins) */
export function mallocArenasGiven(env = process.env) {
  return typeof env.MALLOC_ARENA_MAX === 'string' && env.MALLOC_ARENA_MAX !== '';
}

/** the environment for a bridge process started from here: `env`, with MALLOC_ARENA_MAX when it has none */
export function mallocArenasEnv(env = process.env) {
  return mallocArenasGiven(env) ? { ...env } : { ...env, MALLOC_ARENA_MAX: MALLOC_ARENAS };
}
