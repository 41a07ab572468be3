/**
 * GET /healthz: what one bridge process reports (BridgeServer.health), and, with
 * `server.workers` > 1, the whole bridge's answer made by the primary from every worker's.
 */

/** One process's health, the body of its /healthz answer. */
export interface Health {
  /** ok: the media-server link is up and terminals are taken; degraded: it is not; draining: stopping */
  status: 'ok' | 'degraded' | 'draining';
  mediaServer: string;
  pbx: 'up' | 'down';
  terminals: number;
  calls: number;
}

/** The whole bridge's health with workers: one process's fields, plus how many workers answered. */
export interface BridgeHealth extends Health {
  workers: { expected: number; answered: number; pbxUp: number };
}

/** The HTTP status /healthz answers with: 200 only when ok. */
export function healthStatusCode(h: Health): 200 | 503 {
  return h.status === 'ok' ? 200 : 503;
}

/**
 * The bridge's health from its workers' answers (a worker that did not answer in time is missing):
 * terminals and calls summed; the media-server link `up` only when every expected worker answered
 * and has its link up (a terminal lands on a fixed worker, so one worker down is a share of the
 * numbers refused); `draining` when any worker drains; otherwise `degraded` unless all is well.
 */
export function aggregateHealth(answers: readonly Health[], expected: number, mediaServer: string): BridgeHealth {
  const pbxUp = answers.filter((h) => h.pbx === 'up').length;
  const allUp = answers.length === expected && pbxUp === expected;
  const draining = answers.some((h) => h.status === 'draining');
  return {
    status: draining ? 'draining' : allUp && answers.every((h) => h.status === 'ok') ? 'ok' : 'degraded',
    mediaServer: answers[0]?.mediaServer ?? mediaServer,
    pbx: allUp ? 'up' : 'down',
    terminals: answers.reduce((n, h) => n + h.terminals, 0),
    calls: answers.reduce((n, h) => n + h.calls, 0),
    workers: { expected, answered: answers.length, pbxUp },
  };
}
