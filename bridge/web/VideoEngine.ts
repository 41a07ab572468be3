/**
 * The browser terminal's video, with WebCodecs: the camera (or a shared screen) encoded to H.264
 * (Annex B, baseline) and sent as whole pictures; pictures received decoded and drawn on a canvas.
 * A keyframe request from the far side makes the next picture a keyframe; a decoder that loses its
 * way waits for the next keyframe and asks for one.
 */
import type { CallSession } from '../sdk/CallSession.ts';

const CODEC = 'avc1.42E01F';

interface TrackProcessorCtor {
  new (init: { track: MediaStreamTrack }): { readable: ReadableStream<VideoFrame> };
}

export class VideoSender {
  private readonly encoder: VideoEncoder;
  private readonly track: MediaStreamTrack;
  private wantKey = true;
  private closed = false;
  frames = 0;
  keyframes = 0;
  keyRequests = 0;

  private constructor(call: CallSession, track: MediaStreamTrack, width: number, height: number) {
    this.track = track;
    const start = performance.now();
    this.encoder = new VideoEncoder({
      output: (chunk) => {
        const data = new Uint8Array(chunk.byteLength);
        chunk.copyTo(data);
        const ts = Math.round(((performance.now() - start) * 90000) / 1000) >>> 0;
        call.sendVideo(data, chunk.type === 'key', ts);
        this.frames++;
        if (chunk.type === 'key') this.keyframes++;
      },
      error: () => this.close(),
    });
    this.encoder.configure({ codec: CODEC, width, height, bitrate: 400_000, framerate: 15, latencyMode: 'realtime', avc: { format: 'annexb' } });
    call.on('keyframeRequest', () => {
      this.keyRequests++;
      this.wantKey = true;
    });
    void this.pump();
  }

  /** Starts sending `stream`'s video track (camera or screen) into the call. */
  static start(call: CallSession, stream: MediaStream, width = 320, height = 240): VideoSender | null {
    const Processor = (globalThis as unknown as { MediaStreamTrackProcessor?: TrackProcessorCtor }).MediaStreamTrackProcessor;
    const track = stream.getVideoTracks()[0];
    if (!Processor || !track || typeof VideoEncoder === 'undefined') return null;
    return new VideoSender(call, track, width, height);
  }

  private async pump(): Promise<void> {
    const Processor = (globalThis as unknown as { MediaStreamTrackProcessor: TrackProcessorCtor }).MediaStreamTrackProcessor;
    const reader = new Processor({ track: this.track }).readable.getReader();
    let last = 0;
    while (!this.closed) {
      const { value: frame, done } = await reader.read();
      if (done || !frame) break;
      const now = performance.now();
      // 15 pictures a second at most; keep the encoder's queue short
      if (now - last < 60 || this.encoder.encodeQueueSize > 2) {
        frame.close();
        continue;
      }
      last = now;
      this.encoder.encode(frame, { keyFrame: this.wantKey });
      this.wantKey = false;
      frame.close();
    }
    reader.releaseLock();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.track.stop();
    if (this.encoder.state !== 'closed') this.encoder.close();
  }
}

export class VideoReceiver {
  private decoder: VideoDecoder;
  private readonly canvas: HTMLCanvasElement;
  private waitingForKey = true;
  drawn = 0;

  constructor(call: CallSession, canvas: HTMLCanvasElement) {
    this.canvas = canvas;
    this.decoder = this.makeDecoder(call);
    call.on('video', (frame, keyframe, timestamp) => {
      if (this.waitingForKey && !keyframe) return;
      this.waitingForKey = false;
      try {
        this.decoder.decode(new EncodedVideoChunk({ type: keyframe ? 'key' : 'delta', timestamp: Math.round((timestamp * 1000) / 90), data: frame }));
      } catch {
        this.recover(call);
      }
    });
    call.requestKeyframe();
  }

  private makeDecoder(call: CallSession): VideoDecoder {
    const d = new VideoDecoder({
      output: (frame) => {
        const ctx = this.canvas.getContext('2d');
        if (this.canvas.width !== frame.displayWidth) this.canvas.width = frame.displayWidth;
        if (this.canvas.height !== frame.displayHeight) this.canvas.height = frame.displayHeight;
        ctx?.drawImage(frame, 0, 0, frame.displayWidth, frame.displayHeight);
        frame.close();
        this.drawn++;
      },
      error: () => this.recover(call),
    });
    d.configure({ codec: CODEC, optimizeForLatency: true });
    return d;
  }

  private recover(call: CallSession): void {
    if (this.decoder.state !== 'closed') this.decoder.close();
    this.decoder = this.makeDecoder(call);
    this.waitingForKey = true;
    call.requestKeyframe();
  }

  close(): void {
    if (this.decoder.state !== 'closed') this.decoder.close();
  }
}
