/** Test video made and checked with Debian's ffmpeg / ffprobe (installed by scripts/setup.sh). */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { splitAccessUnits } from '../../bridge/media/h264Stream.ts';

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
