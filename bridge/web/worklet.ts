/**
 * Audio worklets of the browser terminal (bundled on its own, loaded with audioWorklet.addModule):
 *  - "confmux-capture": collects the microphone into 20 ms frames of 16-bit samples and posts them;
 *  - "confmux-playback": a small adaptive jitter buffer in front of the speakers. It starts playing
 *    at its target depth (60 ms), conceals underruns with silence (and raises the target by 20 ms,
 *    up to 200 ms), drops the oldest frames when more than the target plus 100 ms piles up, and
 *    lowers the target again after 10 s without trouble. It reports its depth and counts twice a second.
 */
declare const sampleRate: number;
declare function registerProcessor(name: string, ctor: unknown): void;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor();
}

const FRAME_MS = 20;

class CaptureProcessor extends AudioWorkletProcessor {
  private readonly frame: Int16Array;
  private fill = 0;

  constructor() {
    super();
    this.frame = new Int16Array(Math.round((sampleRate * FRAME_MS) / 1000));
  }

  process(inputs: Float32Array[][]): boolean {
    const input = inputs[0]?.[0];
    if (!input) return true;
    for (let i = 0; i < input.length; i++) {
      const v = Math.max(-1, Math.min(1, input[i]!));
      this.frame[this.fill++] = v < 0 ? v * 0x8000 : v * 0x7fff;
      if (this.fill === this.frame.length) {
        const out = this.frame.slice();
        this.port.postMessage(out, [out.buffer]);
        this.fill = 0;
      }
    }
    return true;
  }
}

class PlaybackProcessor extends AudioWorkletProcessor {
  private readonly queue: Float32Array[] = [];
  private current: Float32Array | null = null;
  private offset = 0;
  private readonly frameSamples = Math.round((sampleRate * FRAME_MS) / 1000);
  private targetFrames = 3;
  private playing = false;
  private concealed = 0;
  private dropped = 0;
  private received = 0;
  private quantum = 0;
  private sinceTrouble = 0;

  constructor() {
    super();
    this.port.onmessage = (ev: MessageEvent<Int16Array>) => {
      const pcm = ev.data;
      const f = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) f[i] = pcm[i]! / 0x8000;
      this.queue.push(f);
      this.received++;
      const max = this.targetFrames + 5;
      while (this.queue.length > max) {
        this.queue.shift();
        this.dropped++;
        this.sinceTrouble = 0;
      }
    };
  }

  private depthFrames(): number {
    return this.queue.length + (this.current ? (this.current.length - this.offset) / this.frameSamples : 0);
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const out = outputs[0]?.[0];
    if (!out) return true;
    if (!this.playing && this.queue.length >= this.targetFrames) this.playing = true;
    for (let i = 0; i < out.length; i++) {
      if (!this.playing) {
        out[i] = 0;
        continue;
      }
      if (!this.current || this.offset >= this.current.length) {
        this.current = this.queue.shift() ?? null;
        this.offset = 0;
        if (!this.current) {
          // underrun: conceal with silence, wait for the buffer to refill, and hold more next time
          this.playing = false;
          this.concealed++;
          this.targetFrames = Math.min(10, this.targetFrames + 1);
          this.sinceTrouble = 0;
          out[i] = 0;
          continue;
        }
      }
      out[i] = this.current[this.offset++]!;
    }
    for (let c = 1; c < (outputs[0]?.length ?? 0); c++) outputs[0]![c]!.set(out);
    this.sinceTrouble += out.length;
    if (this.sinceTrouble > sampleRate * 10 && this.targetFrames > 3) {
      this.targetFrames--;
      this.sinceTrouble = 0;
    }
    if (++this.quantum % Math.round(sampleRate / 2 / out.length) === 0) {
      this.port.postMessage({ depthMs: Math.round(this.depthFrames() * FRAME_MS), targetMs: this.targetFrames * FRAME_MS, concealed: this.concealed, dropped: this.dropped, received: this.received });
    }
    return true;
  }
}

registerProcessor('confmux-capture', CaptureProcessor);
registerProcessor('confmux-playback', PlaybackProcessor);
