/**
 * BENCHMARK STAND-IN for a media server, used by `npm run bench` (bench/bench.ts) and nothing
 * else: it is not selectable in the bridge's configuration. It accepts any terminal number whose
 * password equals the one it was given, answers every call at once (any extension), and echoes each
 * audio payload back to the bridge (EchoCall), with nothing slow in between, so that a load run
 * measures the bridge's own cost. It carries no video, never invites terminals, and keeps presence
 * in a Map.
 */
import { EventEmitter } from 'node:events';
import type { DriverCall, DriverEvents, MediaServerDriver, PlaceCallRequest, Presence } from '../driver.ts';
import { safeEqual } from '../credentials.ts';
import { EchoCall } from './EchoCall.ts';
import { UdpEchoCall } from './UdpEchoCall.ts';
import { WebSocketEchoCall } from './WebSocketEchoCall.ts';

export interface EchoDriverOptions {
  /** the password every terminal number binds with */
  password: string;
  /** echo through this UDP peer (UdpEchoCall) instead of in process (EchoCall) */
  udpPeer?: { host: string; port: number };
  /** echo through this WebSocket media peer (WebSocketEchoCall, ws://host:port) instead */
  wsPeer?: string;
}

export class EchoDriver extends EventEmitter<DriverEvents> implements MediaServerDriver {
  /**
   * MediaServerDriver's kind names the real media servers only; the stand-in is not one of them.
   * /healthz shows "echo".
   */
  readonly kind = 'echo' as unknown as MediaServerDriver['kind'];
  private readonly password: string;
  private up = false;
  private readonly calls = new Set<EchoCall>();
  private readonly udpPeer: { host: string; port: number } | undefined;
  private readonly wsPeer: string | undefined;
  private readonly presence = new Map<string, Presence>();

  constructor(options: EchoDriverOptions) {
    super();
    this.password = options.password;
    this.udpPeer = options.udpPeer;
    this.wsPeer = options.wsPeer;
  }

  get isUp(): boolean {
    return this.up;
  }

  get callCount(): number {
    return this.calls.size;
  }

  start(): Promise<void> {
    if (!this.up) {
      this.up = true;
      this.emit('up');
    }
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.up = false;
    for (const call of [...this.calls]) call.end({ reason: 'pbx_lost', message: 'the echo stand-in closed' });
    return Promise.resolve();
  }

  verifyPassword(_number: string, password: string): Promise<boolean> {
    return Promise.resolve(safeEqual(password, this.password));
  }

  placeCall(request: PlaceCallRequest): DriverCall {
    const forget = (c: EchoCall): boolean => this.calls.delete(c);
    const call = this.wsPeer
      ? new WebSocketEchoCall(request.callId, request.codec, this.wsPeer, forget)
      : this.udpPeer
        ? new UdpEchoCall(request.callId, request.codec, this.udpPeer, forget)
        : new EchoCall(request.callId, request.codec, forget);
    this.calls.add(call);
    return call;
  }

  setPresence(number: string, presence: Presence): Promise<void> {
    if (presence === 'unavailable') this.presence.delete(number);
    else this.presence.set(number, presence);
    return Promise.resolve();
  }

  listPresent(): Promise<string[]> {
    return Promise.resolve([...this.presence.keys()]);
  }
}
