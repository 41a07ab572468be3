/**
 * Audio to and from a parked FreeSWITCH channel streaming with ESL `sendmsg` `call-command:
 * unicast` (transport udp, flags native). Measured on FreeSWITCH 1.10.12 (FACTS, README of the
 * transcripts): from a loopback channel, raw L16 little-endian mono 8 kHz, 320 bytes every 20 ms,
 * no header, both ways; FreeSWITCH sends from its `local-port` to our `remote-port` and plays what
 * arrives on its `local-port`.
 *
 * Both ports live on this host: ours is bound here; FreeSWITCH's must be named in the sendmsg, so a
 * free one is found by binding and releasing a socket (a small race with other programs taking
 * ports in that instant). That is why the FreeSWITCH driver needs FreeSWITCH on the bridge's host
 * (the default: everything on loopback).
 *
 * Media path: no allocation per packet beyond what node:dgram does itself; sends copy into a small
 * ring of buffers because the caller reuses its buffer and a send may still be queued.
 */
import { EventEmitter } from 'node:events';
import type { RemoteInfo, Socket } from 'node:dgram';
import { bindUdp } from '../rtp/udp.ts';
import type { PumpLeg } from '../driver.ts';

export interface UnicastMediaLegEvents {
  close: [string];
}

const RING = 8;
const MAX_PAYLOAD = 1280;

export class UnicastMediaLeg extends EventEmitter<UnicastMediaLegEvents> {
  onAudio: ((payload: Buffer) => void) | null = null;
  /** datagrams dropped: not from FreeSWITCH's port */
  rejected = 0;
  readonly address: string;
  /** our socket's port: FreeSWITCH's `remote-port` */
  readonly port: number;
  /** FreeSWITCH's `local-port`, where we send */
  readonly peerPort: number;
  private readonly socket: Socket;
  private readonly ring: Buffer[] = [];
  private ringIndex = 0;
  private closed = false;

  private constructor(socket: Socket, address: string, peerPort: number) {
    super();
    this.socket = socket;
    this.address = address;
    this.port = socket.address().port;
    this.peerPort = peerPort;
    for (let i = 0; i < RING; i++) this.ring.push(Buffer.alloc(MAX_PAYLOAD));
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      if (rinfo.port !== this.peerPort) {
        this.rejected++;
        return;
      }
      const cb = this.onAudio;
      if (cb !== null) cb(msg);
    });
    socket.on('error', () => this.close('socket error'));
  }

  /** Binds our socket and picks a free port for FreeSWITCH's end, both on `address`. */
  static async create(address: string): Promise<UnicastMediaLeg> {
    const probe = await bindUdp(address);
    const peerPort = probe.address().port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const socket = await bindUdp(address);
    if (socket.address().port === peerPort) {
      // the OS handed the same port back: take another for ourselves
      const other = await bindUdp(address);
      socket.close();
      return new UnicastMediaLeg(other, address, peerPort);
    }
    return new UnicastMediaLeg(socket, address, peerPort);
  }

  /** The sendmsg headers that start FreeSWITCH's side of this leg. */
  unicastHeaders(): Record<string, string> {
    return {
      'call-command': 'unicast',
      'local-ip': this.address,
      'local-port': String(this.peerPort),
      'remote-ip': this.address,
      'remote-port': String(this.port),
      transport: 'udp',
      flags: 'native',
    };
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** This leg for the native media pump: raw payloads to FreeSWITCH's port, only its datagrams back. */
  pumpLeg(): PumpLeg | null {
    if (this.closed) return null;
    return {
      kind: 'udp',
      socket: this.socket,
      remoteHost: this.address,
      remotePort: this.peerPort,
      expectPort: this.peerPort,
      bytesPerSample: 2,
      maxPayload: MAX_PAYLOAD,
      rtp: null,
      resume: () => undefined,
    };
  }

  /** One 20 ms payload (L16/8000: 320 bytes) towards FreeSWITCH. Never throws. */
  send(payload: Buffer): void {
    if (this.closed) return;
    const n = payload.length;
    if (n > MAX_PAYLOAD) return;
    const buf = this.ring[this.ringIndex]!;
    this.ringIndex = (this.ringIndex + 1) % RING;
    payload.copy(buf, 0, 0, n);
    this.socket.send(buf, 0, n, this.peerPort, this.address);
  }

  close(why = 'closed by bridge'): void {
    if (this.closed) return;
    this.closed = true;
    this.onAudio = null;
    try {
      this.socket.close();
    } catch {
      /* already closed */
    }
    this.emit('close', why);
  }
}
