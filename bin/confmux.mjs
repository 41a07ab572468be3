#!/usr/bin/env node
// Runs the confmux command line (bridge/cli/main.ts): bundled, or the TypeScript through tsx.
//
// `serve` runs the bridge with V8's heap options (the young generation bounded, the old one grown
// by a quarter at a time: bin/heapFlags.mjs) and glibc's malloc arenas bounded (MALLOC_ARENA_MAX,
// bin/mallocArenas.mjs). Node and glibc read them only at process start, so when any was not
// given this re-executes itself with the missing ones:
// in place where node has process.execve (22.15 and later), else (Node 20) as a child that this
// process supervises: it relays SIGTERM and SIGINT (bridge/cli/signals.ts), passes SIGHUP on, and
// exits as the child did. Nothing else is loaded here before that (no tsx), so the supervisor
// stays small.
//
// It then runs the bundle in bridge/dist (`npm run build`) when that was made from the sources as
// they are (bin/bundle.mjs), else the TypeScript sources through tsx's loader (about 20 MB more).
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { bundleToRun } from './bundle.mjs';
import { mallocArenasEnv, mallocArenasGiven } from './mallocArenas.mjs';
import { missingHeapFlags } from './heapFlags.mjs';

// (CONFMUX_LAUNCHED: set in the re-executed process's environment, so that it never re-executes again)
const missing = missingHeapFlags();
if (process.argv[2] === 'serve' && process.env.CONFMUX_LAUNCHED !== '1' && (missing.length > 0 || !mallocArenasGiven())) {
  const args = [...missing, ...process.execArgv, ...process.argv.slice(1)];
  const env = { ...mallocArenasEnv(), CONFMUX_LAUNCHED: '1' };
  if (typeof process.execve === 'function') {
    try {
      process.execve(process.execPath, [process.execPath, ...args], env);
    } catch {
      // not possible here: supervise instead
    }
  }
  supervise(args, env);
} else {
  // the bundle (npm run build) when it was made from these sources, else the sources through tsx
  const root = fileURLToPath(new URL('..', import.meta.url));
  const { main, why } = process.env.CONFMUX_FROM_SOURCE === '1' ? { main: null, why: null } : bundleToRun(root);
  if (main) {
    await import(pathToFileURL(main).href);
  } else {
    if (why) process.stderr.write(`confmux: running the TypeScript sources, not bridge/dist (${why}; npm run build makes it again)\n`);
    const { register } = await import('tsx/esm/api');
    register();
    await import('../bridge/cli/main.ts');
  }
}

/** Runs node with `args` and `env` as a child, relays the stop signals to it, and exits as it does. */
function supervise(args, env) {
  const child = spawn(process.execPath, args, { stdio: ['inherit', 'inherit', 'inherit', 'ipc'], env: { ...env, CONFMUX_SUPERVISED: '1' } });
  const relay = (signal) => {
    if (child.connected) child.send({ type: 'confmux:signal', signal });
  };
  process.on('SIGTERM', () => relay('SIGTERM'));
  process.on('SIGINT', () => relay('SIGINT'));
  // the bridge does not handle SIGHUP: a second copy of one changes nothing
  process.on('SIGHUP', () => child.kill('SIGHUP'));
  child.on('error', (err) => {
    process.stderr.write(`error: could not start the bridge: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      // end the same way: the signal's default action
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
      setTimeout(() => process.exit(1), 1000).unref();
      return;
    }
    process.exit(code ?? 1);
  });
}
