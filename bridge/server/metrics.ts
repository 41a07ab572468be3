/**
 * Counters. The media path bumps plain numbers in `mediaStats` (no label lookups per frame);
 * prom-client reads them when /metrics is scraped.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export const mediaStats = {
  framesFromTerminals: 0,
  framesToTerminals: 0,
  droppedSlowTerminal: 0,
  droppedRateLimit: 0,
  videoFromTerminals: 0,
  videoToTerminals: 0,
  /** frames to the media server the native media pump dropped behind a stalled WebSocket leg */
  droppedSlowMediaServer: 0,
  /** audio from the media server the native media pump dropped because it waited longer than server.mediaPumpStaleMs in the bridge */
  droppedStale: 0,
  /** datagrams the native media pump dropped: not from the leg's peer, not its RTP payload type */
  pumpRejectedDatagrams: 0,
  /** connections the native media pump handed back to JavaScript (a close, a bad frame, the end) */
  pumpHandbacks: 0,
};

/** Called before the media counters are read (the native media pump adds its counts). */
export const mediaStatsCollectors: Array<() => void> = [];

/** one direction's relay-added latency, microseconds */
export interface RelayLatencySummary {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  count: number;
}

/**
 * The native media pump's relay-added latency since the last reading (it starts again after each),
 * when the process has a pump; /metrics shows it per scrape interval.
 */
export const relayLatencySource: { read: (() => { up: RelayLatencySummary; down: RelayLatencySummary }) | null } = { read: null };

/** Clients /metrics is served to (the bridge's and, with workers, the primary's). */
export const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

export class Metrics {
  readonly registry = new Registry();
  readonly connections: Counter<'kind'>;
  readonly refusals: Counter<'code'>;
  readonly calls: Counter<'reason'>;
  readonly terminals: Gauge;
  readonly activeCalls: Gauge;

  constructor(sources: { terminals: () => number; calls: () => number }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'confmux_' });
    this.connections = new Counter({ name: 'confmux_connections_bound_total', help: 'connections bound, by kind', labelNames: ['kind'], registers });
    this.refusals = new Counter({ name: 'confmux_refusals_total', help: 'connections closed or requests refused, by error code', labelNames: ['code'], registers });
    this.calls = new Counter({ name: 'confmux_calls_ended_total', help: 'calls ended, by reason', labelNames: ['reason'], registers });
    this.terminals = new Gauge({ name: 'confmux_terminals', help: 'terminals with a bound control connection', registers, collect() { this.set(sources.terminals()); } });
    this.activeCalls = new Gauge({ name: 'confmux_calls', help: 'calls in progress', registers, collect() { this.set(sources.calls()); } });
    const frames = new Gauge({
      name: 'confmux_media_frames_total',
      help: 'media frames relayed, by direction',
      labelNames: ['direction'],
      registers,
      collect() {
        for (const f of mediaStatsCollectors) f();
        frames.set({ direction: 'from_terminal' }, mediaStats.framesFromTerminals);
        frames.set({ direction: 'to_terminal' }, mediaStats.framesToTerminals);
        frames.set({ direction: 'video_from_terminal' }, mediaStats.videoFromTerminals);
        frames.set({ direction: 'video_to_terminal' }, mediaStats.videoToTerminals);
      },
    });
    const dropped = new Gauge({
      name: 'confmux_media_frames_dropped_total',
      help: 'media frames dropped, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        for (const f of mediaStatsCollectors) f();
        dropped.set({ reason: 'slow_terminal' }, mediaStats.droppedSlowTerminal);
        dropped.set({ reason: 'rate_limit' }, mediaStats.droppedRateLimit);
        dropped.set({ reason: 'slow_media_server' }, mediaStats.droppedSlowMediaServer);
        dropped.set({ reason: 'pump_rejected_datagram' }, mediaStats.pumpRejectedDatagrams);
        dropped.set({ reason: 'stale' }, mediaStats.droppedStale);
      },
    });
    const relay = new Gauge({
      name: 'confmux_media_pump_relay_latency_seconds',
      help: 'delay the native media pump added to the frames it relayed since the previous scrape, one way: from the kernel receive time of a packet to its send on the other socket (quantile 1 is the maximum)',
      labelNames: ['direction', 'quantile'],
      registers,
      // with workers the primary aggregates: a quantile is not a sum, so the worst worker's shows
      aggregator: 'max',
      collect() {
        const read = relayLatencySource.read;
        if (read === null) return;
        const l = read();
        for (const [direction, d] of [['to_media_server', l.up], ['to_terminal', l.down]] as const) {
          relay.set({ direction, quantile: '0.5' }, d.p50 / 1e6);
          relay.set({ direction, quantile: '0.99' }, d.p99 / 1e6);
          relay.set({ direction, quantile: '0.999' }, d.p999 / 1e6);
          relay.set({ direction, quantile: '1' }, d.max / 1e6);
        }
      },
    });
    const handbacks = new Gauge({
      name: 'confmux_media_pump_handbacks_total',
      help: 'audio connections the native media pump handed back to the JavaScript path',
      registers,
      collect() {
        for (const f of mediaStatsCollectors) f();
        handbacks.set(mediaStats.pumpHandbacks);
      },
    });
  }
}
