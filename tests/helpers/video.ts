/** Test video made and checked with Debian's ffmpeg / ffprobe (installed by scripts/setup.sh). */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { splitAccessUnits } from '../../bridge/media/h264Stream.ts';
import type { CallSession } from '../../bridge/sdk/CallSession.ts';
import { isH264Keyframe } from '../../plugin/rtp/h264.ts';

/**
 * An H.264 elementary stream (baseline, Annex B) from an ffmpeg lavfi `source` ("testsrc",
 * "smptebars") at 15 fps, written to `out`; `gop` is the keyframe interval in frames.
 */
export function makeH264(out: string, source: string, size: string, seconds: number, gop: number): string {
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `${source}=size=${size}:rate=15`, '-t', String(seconds), '-c:v', 'libx264', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-g', String(gop), '-bf', '0', '-f', 'h264', out]);
  return out;
}

/** The same stream as access units (one per picture), as a terminal sends them. */
export function h264AccessUnits(out: string, source: string, size: string, seconds: number, gop: number): Uint8Array[] {
  return splitAccessUnits(readFileSync(makeH264(out, source, size, seconds, gop)));
}

/** What ffprobe decodes from a recorded stream: picture size and the number of frames. */
export function probeVideo(file: string): { width: number; height: number; frames: number } {
  const out = execFileSync('ffprobe', ['-v', 'quiet', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=width,height,nb_read_frames', '-of', 'csv=p=0', file]).toString().trim();
  const [width, height, frames] = out.split(',').map(Number);
  return { width: width ?? 0, height: height ?? 0, frames: frames ?? 0 };
}

/** 20 ms of a 400 Hz tone in L16/16000 (a whole number of cycles: repeating it is a clean tone). */
export const TONE_400 = new Uint8Array(640);
for (let i = 0; i < 320; i++) {
  const v = Math.round(8000 * Math.sin((2 * Math.PI * 400 * i) / 16000));
  TONE_400[2 * i] = v & 0xff;
  TONE_400[2 * i + 1] = (v >> 8) & 0xff;
}
/** 20 ms of silence in L16/16000. */
export const SILENCE = new Uint8Array(640);

/**
 * A terminal's media loop in a call with video: audio every 20 ms (the tone while `talking()`),
 * H.264 access units at 15 fps, jumping to the next keyframe when asked for one.
 */
export function sendMedia(call: CallSession, aus: Uint8Array[], talking: () => boolean): { stop(): void; requests(): number } {
  let pos = 0;
  let n = 0;
  let wantKey = false;
  let requests = 0;
  call.on('keyframeRequest', () => {
    requests++;
    wantKey = true;
  });
  const audio = setInterval(() => call.sendAudio(talking() ? TONE_400 : SILENCE), 20);
  const video = setInterval(() => {
    if (wantKey) {
      wantKey = false;
      while (!isH264Keyframe(aus[pos % aus.length]!)) pos++;
    }
    const au = aus[pos++ % aus.length]!;
    call.sendVideo(au, isH264Keyframe(au), (n++ * 6000) >>> 0);
  }, 1000 / 15);
  return {
    stop(): void {
      clearInterval(audio);
      clearInterval(video);
    },
    requests: () => requests,
  };
}
