// Tone generation and detection for audio assertions.
//
// goertzel() measures the power of one frequency; toneLevel() turns it into a
// normalised level per block, robust to a few bad blocks (median); and
// dominantTone() compares several candidate tones so a test can assert
// "contains 1000 Hz, not 440 Hz" and print the numbers behind the verdict.
import { writeWav } from '../../bridge/media/wav.ts';

export interface SineOptions {
  freq: number;
  seconds: number;
  sampleRate?: number; // default 8000
  amplitude?: number; // 0..1 of full scale, default 0.5
  fadeMs?: number; // raised-cosine fade in/out, default 10 ms (avoids clicks)
}

export function sineSamples(opts: SineOptions): Int16Array {
  const rate = opts.sampleRate ?? 8000;
  const amp = (opts.amplitude ?? 0.5) * 32767;
  const n = Math.round(opts.seconds * rate);
  const fade = Math.min(Math.floor(n / 2), Math.round(((opts.fadeMs ?? 10) / 1000) * rate));
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    let g = 1;
    if (fade > 0 && i < fade) g = 0.5 - 0.5 * Math.cos((Math.PI * i) / fade);
    else if (fade > 0 && i >= n - fade) g = 0.5 - 0.5 * Math.cos((Math.PI * (n - 1 - i)) / fade);
    out[i] = Math.round(amp * g * Math.sin((2 * Math.PI * opts.freq * i) / rate));
  }
  return out;
}

/** Writes a mono PCM16 sine WAV; returns the path. */
export function sineWav(path: string, opts: SineOptions): string {
  writeWav(path, opts.sampleRate ?? 8000, sineSamples(opts));
  return path;
}

/**
 * Goertzel power of `freq` over `samples` (all of them, or [start, end)).
 * Normalised so a full-scale sine at exactly `freq` gives ~0.25 (amplitude²/4)
 * whatever the block length: power = |X(f)|² / N², samples scaled to ±1.
 */
export function goertzel(samples: ArrayLike<number>, sampleRate: number, freq: number, start = 0, end = samples.length): number {
  const n = end - start;
  if (n <= 0) return 0;
  const w = (2 * Math.PI * freq) / sampleRate;
  const coeff = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  for (let i = start; i < end; i++) {
    const s0 = samples[i]! / 32768 + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const re = s1 - s2 * Math.cos(w);
  const im = s2 * Math.sin(w);
  return (re * re + im * im) / (n * n);
}

/** Mean square of the samples (scaled to ±1): a full-scale sine gives 0.5. */
export function meanSquare(samples: ArrayLike<number>, start = 0, end = samples.length): number {
  let acc = 0;
  for (let i = start; i < end; i++) {
    const v = samples[i]! / 32768;
    acc += v * v;
  }
  return end > start ? acc / (end - start) : 0;
}

export interface LevelOptions {
  skipSeconds?: number; // ignore the start (call setup, jitter buffer fill); default 0
  untilSeconds?: number; // ignore everything after this point; default: the end
  blockMs?: number; // analysis block, default 100 ms (10 Hz bins)
}

export interface ToneLevel {
  freq: number;
  /** Median over blocks of the tone's Goertzel power (~amplitude²/4 for a sine). */
  power: number;
  /** The same in dBFS-ish terms: 10·log10(power·4) → 0 dB for a full-scale sine. */
  db: number;
  /** Fraction of blocks in which the tone holds at least half of the block's energy. */
  presence: number;
  blocks: number;
}

function blocks(samples: ArrayLike<number>, rate: number, opts: LevelOptions): Array<[number, number]> {
  const block = Math.max(1, Math.round(((opts.blockMs ?? 100) / 1000) * rate));
  const from = Math.min(samples.length, Math.round((opts.skipSeconds ?? 0) * rate));
  const to = Math.min(samples.length, opts.untilSeconds === undefined ? samples.length : Math.round(opts.untilSeconds * rate));
  const out: Array<[number, number]> = [];
  for (let s = from; s + block <= to; s += block) out.push([s, s + block]);
  return out;
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function toDb(power: number): number {
  return power > 0 ? 10 * Math.log10(power * 4) : -Infinity;
}

/** Level of one tone, per block, summarised robustly. */
export function toneLevel(samples: ArrayLike<number>, sampleRate: number, freq: number, opts: LevelOptions = {}): ToneLevel {
  const bs = blocks(samples, sampleRate, opts);
  const powers: number[] = [];
  let present = 0;
  for (const [a, b] of bs) {
    const p = goertzel(samples, sampleRate, freq, a, b);
    powers.push(p);
    // A pure sine of amplitude A has mean square A²/2 and Goertzel power A²/4.
    const ms = meanSquare(samples, a, b);
    if (ms > 1e-7 && (2 * p) / ms >= 0.5) present++;
  }
  const power = median(powers);
  return { freq, power, db: toDb(power), presence: bs.length ? present / bs.length : 0, blocks: bs.length };
}

export interface DominantTone {
  /** The strongest candidate, or null when nothing stands out of silence. */
  freq: number | null;
  levels: ToneLevel[];
  /** dB of the winner above the runner-up (Infinity with one candidate). */
  marginDb: number;
  /** Overall signal level (mean square → dB, 0 dB = full-scale sine). */
  signalDb: number;
}

/**
 * Which of `candidates` dominates the recording. A winner must be at least
 * `minMarginDb` (default 20 dB) above every other candidate and at least
 * `minDb` (default -50 dB, i.e. well above digital silence and µ-law idle noise).
 */
export function dominantTone(
  samples: ArrayLike<number>,
  sampleRate: number,
  candidates: number[],
  opts: LevelOptions & { minMarginDb?: number; minDb?: number } = {},
): DominantTone {
  const levels = candidates.map((f) => toneLevel(samples, sampleRate, f, opts));
  const sorted = [...levels].sort((a, b) => b.power - a.power);
  const best = sorted[0];
  const second = sorted[1];
  const marginDb = best && second ? best.db - second.db : Infinity;
  const bs = blocks(samples, sampleRate, opts);
  const ms = median(bs.map(([a, b]) => meanSquare(samples, a, b)));
  const signalDb = ms > 0 ? 10 * Math.log10(ms * 2) : -Infinity;
  const ok = best !== undefined && best.db >= (opts.minDb ?? -50) && marginDb >= (opts.minMarginDb ?? 20);
  return { freq: ok ? best.freq : null, levels, marginDb, signalDb };
}

/** One line for test logs: "1000Hz -8.1dB (97%)  440Hz -71.3dB (0%)  margin 63.2dB". */
export function describeTones(d: DominantTone): string {
  const parts = d.levels.map((l) => `${l.freq}Hz ${l.db.toFixed(1)}dB (${Math.round(l.presence * 100)}%)`);
  return `${parts.join('  ')}  signal ${d.signalDb.toFixed(1)}dB  margin ${d.marginDb.toFixed(1)}dB  → ${d.freq ?? 'none'}`;
}
