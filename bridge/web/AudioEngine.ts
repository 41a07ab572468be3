/**
 * The browser terminal's audio: microphone -> 20 ms L16/16000 frames for the call, and the call's
 * frames -> jitter buffer -> speakers, with an analyser on the playback path (what the person hears).
 */
export interface PlaybackStats {
  depthMs: number;
  targetMs: number;
  concealed: number;
  dropped: number;
  received: number;
}

export class AudioEngine {
  readonly context: AudioContext;
  readonly analyser: AnalyserNode;
  private capture: AudioWorkletNode | null = null;
  private playback: AudioWorkletNode | null = null;
  private stream: MediaStream | null = null;
  stats: PlaybackStats = { depthMs: 0, targetMs: 60, concealed: 0, dropped: 0, received: 0 };
  onFrame: ((pcm: Int16Array) => void) | null = null;
  onStats: ((s: PlaybackStats) => void) | null = null;
  muted = false;

  private constructor(context: AudioContext) {
    this.context = context;
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 4096;
    this.analyser.smoothingTimeConstant = 0.3;
  }

  static async start(workletUrl: string): Promise<AudioEngine> {
    const context = new AudioContext({ sampleRate: 16000 });
    await context.audioWorklet.addModule(workletUrl);
    const engine = new AudioEngine(context);
    await engine.wire();
    return engine;
  }

  private async wire(): Promise<void> {
    const ctx = this.context;
    this.playback = new AudioWorkletNode(ctx, 'confmux-playback', { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
    this.playback.port.onmessage = (ev: MessageEvent<PlaybackStats>) => {
      this.stats = ev.data;
      this.onStats?.(ev.data);
    };
    this.playback.connect(this.analyser);
    this.analyser.connect(ctx.destination);
    // speech processing off: it fades steady tones within seconds and colours what is sent
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 } });
    const source = ctx.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(ctx, 'confmux-capture', { numberOfInputs: 1, numberOfOutputs: 0 });
    this.capture.port.onmessage = (ev: MessageEvent<Int16Array>) => {
      const pcm = this.muted ? new Int16Array(ev.data.length) : ev.data;
      this.onFrame?.(pcm);
    };
    source.connect(this.capture);
    if (ctx.state === 'suspended') await ctx.resume();
  }

  /** One received frame (L16 little-endian bytes) into the jitter buffer. */
  play(payload: Uint8Array): void {
    const n = payload.length >> 1;
    const pcm = new Int16Array(n);
    for (let i = 0; i < n; i++) pcm[i] = (payload[2 * i]! | (payload[2 * i + 1]! << 8)) << 16 >> 16;
    this.playback?.port.postMessage(pcm, [pcm.buffer]);
  }

  /** Level in dB of `freq` in what is being played (from the analyser). */
  level(freq: number): number {
    const bins = new Float32Array(this.analyser.frequencyBinCount);
    this.analyser.getFloatFrequencyData(bins);
    const bin = Math.round(freq / (this.context.sampleRate / this.analyser.fftSize));
    let max = -Infinity;
    for (let i = Math.max(0, bin - 2); i <= Math.min(bins.length - 1, bin + 2); i++) max = Math.max(max, bins[i]!);
    return max;
  }

  async close(): Promise<void> {
    this.stream?.getTracks().forEach((t) => t.stop());
    await this.context.close().catch(() => undefined);
  }
}
