/**
 * The bridge's configuration: one zod schema, read from a JSON file and then environment
 * overrides, validated once at start (every error listed), frozen. docs/configuration.md
 * documents every option with its default; tests/unit/config.test.ts keeps the two in step.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

const port = z.coerce.number().int().min(0).max(65535);
const ms = z.coerce.number().int().min(1);
/** booleans from env arrive as strings: accept exactly true/false, never coerce "false" to true */
const bool = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]);

export const ConfigSchema = z
  .object({
    server: z
      .object({
        host: z.string().min(1).default('0.0.0.0'),
        port: port.default(8080),
        /** the HTTP path terminals open their WebSockets on */
        path: z.string().startsWith('/').default('/'),
        /** TLS on the one port (wss://): PEM files, re-read when they change (certificates renew) */
        tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict().optional(),
        /** serve plain ws:// without TLS: only behind a TLS-terminating proxy (a warning at start) */
        plain: bool.default(false),
        /** browser origins allowed besides the page's own (e.g. https://portal.example.com); requests without Origin (non-browsers) are not affected */
        allowedOrigins: z.array(z.string().url()).default([]),
        /** worker processes behind the one port (one per core); above 1 a primary routes each connection by its terminal number, and plain mode is required (docs/performance.md) */
        workers: z.coerce.number().int().min(1).max(64).default(1),
        /** the native media pump for audio on UDP legs (docs/performance.md): auto (when built), on (required), off */
        mediaPump: z.enum(['auto', 'on', 'off']).default('auto'),
        /** the pump's relay thread: realtime (SCHED_FIFO when the process may: root or CAP_SYS_NICE) or normal */
        mediaPumpPriority: z.enum(['realtime', 'normal']).default('realtime'),
        /** µs the pump's relay thread lets pass after a wake-up that found packets before it looks again (fewer wake-ups under load; each packet waits at most this long); 0: look again at once */
        mediaPumpCoalesceUs: z.coerce.number().int().min(0).max(2000).default(200),
        /** ms: audio from the media server that waited longer than this in the bridge (the kernel's receive time to the pump) is dropped, not sent late; 0: never */
        mediaPumpStaleMs: z.coerce.number().int().min(0).max(10000).default(100),
      })
      .strict()
      .default({}),
    limits: z
      .object({
        /** concurrent connections from one IP address (TOO_MANY_CONNECTIONS beyond) */
        maxConnectionsPerIp: z.coerce.number().int().min(1).default(64),
        /** connections not yet bound, in total (TOO_MANY_CONNECTIONS beyond) */
        maxUnauthenticated: z.coerce.number().int().min(1).default(1000),
        /** new connections per second from one IP address (token bucket rate; RATE_LIMITED beyond) */
        connectionsPerSecondPerIp: z.coerce.number().positive().default(10),
        /** new connections in a burst from one IP address */
        connectionBurstPerIp: z.coerce.number().int().min(1).default(20),
        /** failed logins of one number, or from one IP address, before logins are throttled */
        loginFailuresAllowed: z.coerce.number().int().min(1).default(5),
        /** first throttling window after too many failures; it doubles with each further failure, up to 15 min */
        loginThrottleMs: ms.default(2000),
        /** a connection that has not sent its bind message by then is closed (BIND_TIMEOUT) */
        bindTimeoutMs: ms.default(5000),
        /** HTTP request headers (the WebSocket handshake) must arrive within this */
        handshakeTimeoutMs: ms.default(10000),
        /** largest WebSocket message accepted at all (bytes) */
        maxMessageBytes: z.coerce.number().int().min(1024).default(262144),
        /** largest text message on a control connection (bytes) */
        maxControlMessageBytes: z.coerce.number().int().min(256).default(8192),
        /** largest audio frame, header included (bytes) */
        maxAudioFrameBytes: z.coerce.number().int().min(64).default(4096),
        /** control messages per second per connection (token bucket rate) */
        controlMessagesPerSecond: z.coerce.number().positive().default(20),
        /** control messages in a burst (token bucket size) */
        controlBurst: z.coerce.number().int().positive().default(40),
        /** largest video frame (one encoded picture), header included (bytes) */
        maxVideoFrameBytes: z.coerce.number().int().min(1024).default(262144),
        /** bytes queued to a terminal's video connection above which its video frames are dropped */
        videoSendHighWaterBytes: z.coerce.number().int().min(65536).default(1048576),
        /** video frames per second per video or content stream (token bucket rate); more are dropped and counted */
        videoFramesPerSecond: z.coerce.number().positive().default(60),
        /** audio frames per second per media connection (token bucket rate; 20 ms frames = 50/s) */
        audioFramesPerSecond: z.coerce.number().positive().default(100),
        /** how long a media token stays valid (ms); it is single-use */
        mediaTokenTtlMs: ms.default(30000),
        /** how long an invitation from the PBX rings a terminal before it ends as no_answer */
        inviteTimeoutMs: ms.default(30000),
        /** a terminal whose connection drops mid-call may resume within this window; its calls stay up (silence to the PBX meanwhile) */
        resumeWindowMs: z.coerce.number().int().min(0).default(20000),
        /** concurrent calls per terminal */
        maxCallsPerTerminal: z.coerce.number().int().min(1).default(4),
        /** WebSocket ping interval; a connection that misses one pong is closed */
        heartbeatIntervalMs: ms.default(15000),
        /** bytes queued to a slow terminal above which its media frames are dropped */
        sendHighWaterBytes: z.coerce.number().int().min(1024).default(65536),
      })
      .strict()
      .default({}),
    /** which media server the bridge drives; only its section's password is required */
    mediaServer: z.enum(['asterisk', 'freeswitch']).default('asterisk'),
    asterisk: z
      .object({
        /** ARI base URL: keep it on loopback or a private network */
        url: z.string().url().default('http://127.0.0.1:8088'),
        user: z.string().min(1).default('confmux'),
        /** required when mediaServer is asterisk (checked in loadConfig, listed with every other problem) */
        password: z.string().default(''),
        /** Stasis application name; two bridges on one Asterisk need two names */
        app: z.string().regex(/^[A-Za-z0-9_-]+$/).default('confmux'),
        /** dialplan context a terminal's call is placed into */
        context: z.string().min(1).default('confmux-rooms'),
        /** media transport to Asterisk: chan_websocket on the ARI port, or UDP RTP (u-law) */
        mediaTransport: z.enum(['websocket', 'rtp']).default('websocket'),
        /** local address the RTP sockets bind to (mediaTransport rtp) */
        rtpBindAddress: z.string().min(1).default('127.0.0.1'),
        /** timeout of each ARI request */
        requestTimeoutMs: ms.default(5000),
        /** how long a placed call may ring before it ends as no_answer (seconds) */
        dialTimeoutS: z.coerce.number().int().min(1).max(600).default(60),
        /** how often channels left in our app without a call (a failed clean-up) are hung up */
        orphanSweepMs: z.coerce.number().int().min(1000).max(3_600_000).default(30000),
        /** address of the bridge's SIP leg (calls with video): Asterisk sends its INVITEs here */
        sipAddress: z.string().min(1).default('127.0.0.1'),
        /** UDP port of the SIP leg (0: any free port; Asterisk is told which) */
        sipPort: port.default(0),
        /** the PJSIP endpoint Asterisk dials the SIP leg with (dialplan/asterisk/pjsip.conf) */
        sipEndpoint: z.string().min(1).default('confmux-media'),
      })
      .strict()
      .default({}),
    freeswitch: z
      .object({
        /** event socket (mod_event_socket) address: keep it on loopback */
        host: z.string().min(1).default('127.0.0.1'),
        port: port.default(8021),
        /** event socket password; required when mediaServer is freeswitch */
        password: z.string().default(''),
        /** dialplan context a terminal's calls are placed into (loopback/<to>/<context>) */
        context: z.string().regex(/^[A-Za-z0-9_.+-]+$/).default('default'),
        /** directory domain of the terminals' users (user_data <n>@<domain>); empty: ask FreeSWITCH (global_getvar domain) */
        domain: z.string().regex(/^[A-Za-z0-9_.:-]*$/).default(''),
        /** set as confmux_bridge on every channel the bridge creates; at link-up channels with it are hung up (left by an earlier run). Two bridges on one FreeSWITCH need two values */
        bridgeId: z.string().regex(/^[A-Za-z0-9_-]+$/).default('confmux'),
        /** address of the UDP sockets of the unicast audio stream, ours and FreeSWITCH's: FreeSWITCH must run on this host */
        rtpBindAddress: z.string().min(1).default('127.0.0.1'),
        /** address of the bridge's SIP leg (calls with video): FreeSWITCH's sofia profile sends its INVITEs here */
        sipAddress: z.string().min(1).default('127.0.0.1'),
        /** UDP port of the SIP leg (0: any free port; FreeSWITCH is told which in each originate) */
        sipPort: port.default(0),
        /** the sofia profile FreeSWITCH dials the SIP leg from (dialplan/freeswitch/sip_profile_confmux.xml) */
        sipProfile: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('confmux'),
        /** timeout of each ESL request */
        requestTimeoutMs: ms.default(5000),
        /** how long a placed call may ring before it ends as no_answer (seconds) */
        dialTimeoutS: z.coerce.number().int().min(1).max(600).default(60),
      })
      .strict()
      .default({}),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .default({}),
    presence: z
      .object({
        /** when the media server link comes up, mark terminals it shows as reachable but that are not registered here as unavailable (left by a bridge that died) */
        clearStale: bool.default(true),
      })
      .strict()
      .default({}),
    web: z
      .object({
        /** serve the browser terminal (GET server.path: the page, app.js, worklet.js) */
        enabled: bool.default(true),
      })
      .strict()
      .default({}),
    metrics: z
      .object({
        /** serve Prometheus metrics at GET /metrics, to loopback clients only */
        enabled: bool.default(true),
      })
      .strict()
      .default({}),
    shutdown: z
      .object({
        /** on SIGTERM, calls may go on this long before they are ended (ms) */
        drainTimeoutMs: z.coerce.number().int().min(0).default(30000),
      })
      .strict()
      .default({}),
  })
  .strict();

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;

/** Environment variable -> config path. Each overrides the file. */
export const ENV_OVERRIDES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  CONFMUX_HOST: ['server', 'host'],
  CONFMUX_PORT: ['server', 'port'],
  CONFMUX_PATH: ['server', 'path'],
  CONFMUX_TLS_CERT: ['server', 'tls', 'cert'],
  CONFMUX_TLS_KEY: ['server', 'tls', 'key'],
  CONFMUX_PLAIN: ['server', 'plain'],
  CONFMUX_WORKERS: ['server', 'workers'],
  CONFMUX_MEDIA_PUMP: ['server', 'mediaPump'],
  CONFMUX_MEDIA_PUMP_PRIORITY: ['server', 'mediaPumpPriority'],
  CONFMUX_MEDIA_PUMP_COALESCE_US: ['server', 'mediaPumpCoalesceUs'],
  CONFMUX_MEDIA_PUMP_STALE_MS: ['server', 'mediaPumpStaleMs'],
  CONFMUX_MEDIA_SERVER: ['mediaServer'],
  CONFMUX_ARI_URL: ['asterisk', 'url'],
  CONFMUX_ARI_USER: ['asterisk', 'user'],
  CONFMUX_ARI_PASSWORD: ['asterisk', 'password'],
  CONFMUX_ARI_APP: ['asterisk', 'app'],
  CONFMUX_ASTERISK_CONTEXT: ['asterisk', 'context'],
  CONFMUX_ASTERISK_MEDIA_TRANSPORT: ['asterisk', 'mediaTransport'],
  CONFMUX_ESL_HOST: ['freeswitch', 'host'],
  CONFMUX_ESL_PORT: ['freeswitch', 'port'],
  CONFMUX_ESL_PASSWORD: ['freeswitch', 'password'],
  CONFMUX_FREESWITCH_CONTEXT: ['freeswitch', 'context'],
  CONFMUX_FREESWITCH_DOMAIN: ['freeswitch', 'domain'],
  CONFMUX_FREESWITCH_SIP_PROFILE: ['freeswitch', 'sipProfile'],
  CONFMUX_LOG_LEVEL: ['log', 'level'],
  CONFMUX_BIND_TIMEOUT_MS: ['limits', 'bindTimeoutMs'],
  CONFMUX_HEARTBEAT_INTERVAL_MS: ['limits', 'heartbeatIntervalMs'],
  CONFMUX_DRAIN_TIMEOUT_MS: ['shutdown', 'drainTimeoutMs'],
});

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Builds the config from an optional file, then env; throws ConfigError listing every problem. */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: ConfigInput | Record<string, unknown>; forServe?: boolean } = {}): Readonly<Config> {
  const env = options.env ?? process.env;
  const problems: string[] = [];
  let raw: Record<string, unknown> = {};
  const file = options.file ?? env.CONFMUX_CONFIG;
  if (file) {
    try {
      const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) problems.push(`${file}: must hold a JSON object`);
      else raw = parsed as Record<string, unknown>;
    } catch (err) {
      problems.push(`${file}: ${(err as Error).message}`);
    }
  }
  if (options.overrides) raw = mergeDeep(raw, options.overrides as Record<string, unknown>);
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value !== undefined && value !== '') setPath(raw, path, value);
  }
  const result = ConfigSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      problems.push(`${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
  }
  // only the selected media server's password is required; checked on the raw input so that it is
  // listed even when other options are wrong too
  const selected = raw.mediaServer === undefined ? 'asterisk' : raw.mediaServer;
  const section = (name: string): Record<string, unknown> => {
    const v = raw[name];
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
  };
  if (selected === 'asterisk' && !section('asterisk').password) problems.push('asterisk.password: required when mediaServer is asterisk (CONFMUX_ARI_PASSWORD)');
  if (selected === 'freeswitch' && !section('freeswitch').password) problems.push('freeswitch.password: required when mediaServer is freeswitch (CONFMUX_ESL_PASSWORD)');
  // the one port faces the internet: TLS, or plain only when asked for (behind a TLS proxy)
  if (options.forServe && result.success && !result.data.server.tls && !result.data.server.plain) {
    problems.push('server.tls: give a certificate and key (CONFMUX_TLS_CERT, CONFMUX_TLS_KEY), or set server.plain=true (CONFMUX_PLAIN=true) behind a TLS-terminating proxy');
  }
  // the primary reads each connection's HTTP request and first WebSocket message to route it: it
  // cannot read them through TLS
  if (result.success && result.data.server.workers > 1 && result.data.server.tls) {
    problems.push('server.workers: more than one worker needs plain mode behind a TLS-terminating proxy (server.plain=true, no server.tls): the primary routes each connection by what it reads from it');
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  return deepFreeze(result.data);
}

function mergeDeep(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && typeof prev === 'object' && prev !== null && !Array.isArray(prev)) {
      out[k] = mergeDeep(prev as Record<string, unknown>, v as Record<string, unknown>);
    } else out[k] = v;
  }
  return out;
}
