/**
 * Audio to and from an Asterisk externalMedia channel over chan_websocket: a WebSocket client to
 * ws://<ARI host>/media/<MEDIA_WEBSOCKET_CONNECTION_ID> with subprotocol "media". Binary frames
 * are bare payload in the channel's format. Asterisk's queue holds 1000 frames: we always read,
 * and stop sending between MEDIA_XOFF and MEDIA_XON (frames dropped then are counted).
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import type { WebSocketPumpLeg } from '../driver.ts';
import { rawSocket } from '../../bridge/server/wsFrames.ts';

export interface MediaLegEvents {
  /** the leg is ready to carry media */
  open: [];
  /** the leg is gone (its socket closed, or close() was called) */
  close: [string];
}

export class WebSocketMediaLeg extends EventEmitter<MediaLegEvents> {
  onAudio: ((payload: Buffer) => void) | null = null;
  /** frames not sent because Asterisk asked us to hold off */
  droppedXoff = 0;
  private readonly ws: WebSocket;
  private xoff = false;
  private started = false;
  private closed = false;

  constructor(url: string, connectTimeoutMs: number) {
    super();
    this.ws = new WebSocket(url, 'media', { perMessageDeflate: false, handshakeTimeout: connectTimeoutMs, maxPayload: 65536 });
    this.ws.binaryType = 'nodebuffer';
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) {
        const cb = this.onAudio;
        if (cb !== null) cb(data);
        return;
      }
      this.onText(data.toString());
    });
    this.ws.on('error', () => {
      /* close follows; the reason is reported there */
    });
    this.ws.on('close', (code: number, reason: Buffer) => this.finish(`media socket closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`));
  }

  private onText(text: string): void {
    if (text.startsWith('MEDIA_START')) {
      if (!this.started) {
        this.started = true;
        this.emit('open');
      }
    } else if (text.startsWith('MEDIA_XOFF')) this.xoff = true;
    else if (text.startsWith('MEDIA_XON')) this.xoff = false;
  }

  get isOpen(): boolean {
    return this.started && !this.closed;
  }

  send(payload: Buffer): void {
    if (this.closed || !this.started) return;
    if (this.xoff) {
      this.droppedXoff++;
      return;
    }
    // ws masks client frames into a copy, so the caller may reuse `payload` at once
    this.ws.send(payload, { binary: true });
  }

  /** This leg for the native media pump, while media flows (not before MEDIA_START, not in XOFF). */
  pumpLeg(bytesPerSample: number): WebSocketPumpLeg | null {
    const tcp = rawSocket(this.ws);
    if (!this.started || this.closed || this.xoff || tcp === null || this.ws.readyState !== WebSocket.OPEN) return null;
    return { kind: 'websocket', ws: this.ws, tcp, bytesPerSample, maxPayload: 4096 };
  }

  private finish(why: string): void {
    if (this.closed) return;
    this.closed = true;
    this.onAudio = null;
    this.emit('close', why);
  }

  /** Closing the socket hangs the channel up on Asterisk's side. Idempotent. */
  close(): void {
    const wasClosed = this.closed;
    this.finish('closed by bridge');
    if (!wasClosed || this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) {
      if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
      else if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    }
  }
}
