/**
 * Splitting an H.264 elementary stream (Annex B, as `ffmpeg -f h264` writes it) into access units,
 * for the terminal CLI: a new access unit starts at an access unit delimiter, SPS, PPS or SEI that
 * follows a picture, or at a slice whose first_mb_in_slice is 0 (its first bit after the NAL header
 * is 1) that follows a picture.
 */
import { forEachNal, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SEI, NAL_SLICE, NAL_SPS } from '../../plugin/rtp/h264.ts';

export function splitAccessUnits(stream: Uint8Array): Uint8Array[] {
  let auStart = -1;
  let hasPicture = false;
  const units: Uint8Array[] = [];
  forEachNal(stream, (s) => {
    // back up over the start code to include it in the unit
    let codeStart = s - 3;
    if (codeStart > 0 && stream[codeStart - 1] === 0) codeStart--;
    const type = stream[s]! & 0x1f;
    const isVcl = type === NAL_SLICE || type === NAL_IDR;
    const firstSlice = isVcl && s + 1 < stream.length && (stream[s + 1]! & 0x80) !== 0;
    const boundary = hasPicture && (type === NAL_AUD || type === NAL_SPS || type === NAL_PPS || type === NAL_SEI || firstSlice);
    if (auStart < 0) auStart = codeStart;
    else if (boundary) {
      units.push(stream.subarray(auStart, codeStart));
      auStart = codeStart;
      hasPicture = false;
    }
    if (isVcl) hasPicture = true;
  });
  if (auStart >= 0 && auStart < stream.length) units.push(stream.subarray(auStart));
  return units;
}
