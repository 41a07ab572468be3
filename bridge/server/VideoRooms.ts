/**
 * Which video calls on this bridge are in the same room (the same dialled extension), so that a
 * viewer's keyframe request reaches the terminals sending video there at once. The standard path
 * (SIP INFO picture_fast_update to the media server) is tried too, but Asterisk 22's ConfBridge was
 * measured not to pass such requests on for H.264: without this, a new viewer waits for the
 * sender's next periodic keyframe.
 */
export interface VideoParticipant {
  readonly room: string;
  /** asks this participant's terminal for a keyframe (rate-limited by the participant) */
  askTerminalForKeyframe(): void;
}

export class VideoRooms {
  private readonly rooms = new Map<string, Set<VideoParticipant>>();

  join(p: VideoParticipant): void {
    let set = this.rooms.get(p.room);
    if (!set) this.rooms.set(p.room, (set = new Set()));
    set.add(p);
  }

  leave(p: VideoParticipant): void {
    const set = this.rooms.get(p.room);
    if (!set) return;
    set.delete(p);
    if (set.size === 0) this.rooms.delete(p.room);
  }

  /** Asks every other participant of `from`'s room for a keyframe. */
  requestKeyframe(from: VideoParticipant): void {
    const set = this.rooms.get(from.room);
    if (!set) return;
    for (const p of set) if (p !== from) p.askTerminalForKeyframe();
  }
}
