/**
 * Video codecs a terminal may agree for a call, with the id carried in byte 2 of its video frames.
 * A video frame's payload is one whole encoded picture: an H.264 access unit in Annex B byte-stream
 * form (start codes), or one VP8 frame. Timestamps run at 90 kHz.
 */
export interface VideoCodec {
  readonly id: number;
  readonly name: VideoCodecName;
  /** the encoding name in SDP */
  readonly sdpName: 'H264' | 'VP8';
  readonly clockRate: 90000;
}

export type VideoCodecName = 'H264/90000' | 'VP8/90000';

export const H264: VideoCodec = Object.freeze({ id: 3, name: 'H264/90000', sdpName: 'H264', clockRate: 90000 });
export const VP8: VideoCodec = Object.freeze({ id: 4, name: 'VP8/90000', sdpName: 'VP8', clockRate: 90000 });

export const VIDEO_CODECS: readonly VideoCodec[] = Object.freeze([H264, VP8]);

export function videoCodecByName(name: string): VideoCodec | undefined {
  return VIDEO_CODECS.find((c) => c.name === name);
}

export function chooseVideoCodec(offered: readonly string[]): VideoCodec | undefined {
  for (const name of offered) {
    const c = videoCodecByName(name);
    if (c) return c;
  }
  return undefined;
}
