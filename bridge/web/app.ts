/**
 * The browser terminal served by `confmux serve` on its one port: sign in with number and password,
 * call a room or accept an invitation, talk and listen, mute, DTMF, hang up. It speaks the same
 * protocol through the same SDK as the Node terminal (bridge/sdk/), over the page's own origin.
 */
import { TerminalClient, type WebSocketLike } from '../sdk/TerminalClient.ts';
import type { CallSession, HangupInfo } from '../sdk/CallSession.ts';
import type { Invitation } from '../sdk/Invitation.ts';
import { TerminalError } from '../sdk/TerminalError.ts';
import { AudioEngine, type PlaybackStats } from './AudioEngine.ts';
import { VideoReceiver, VideoSender } from './VideoEngine.ts';

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const stateEl = $('state');
const errorEl = $('error');

type Kind = '' | 'ok' | 'busy' | 'bad' | 'ring';
function setState(text: string, kind: Kind): void {
  stateEl.textContent = text;
  stateEl.dataset.kind = kind;
}
function showError(err: unknown): void {
  const code = err instanceof TerminalError ? err.code : 'ERROR';
  const message = err instanceof Error ? err.message : String(err);
  const friendly: Record<string, string> = {
    AUTH_FAILED: 'Wrong number or password.',
    PBX_UNAVAILABLE: 'The conference server cannot be reached right now.',
    CONNECTION_CLOSED: 'Connection lost.',
    REPLACED: 'You signed in somewhere else.',
  };
  errorEl.textContent = `${friendly[code] ?? message} (${code})`;
}
function hangupText(info: HangupInfo): string {
  const t: Record<string, string> = {
    normal: 'Call ended', remote: 'The other side ended the call', busy: 'Busy', no_answer: 'No answer',
    rejected: 'Call rejected', unavailable: 'Unavailable', not_found: 'No such room or extension',
    media_lost: 'Media connection lost', pbx_lost: 'Conference server lost', kicked: 'Removed from the room',
    cancelled: 'Caller gave up', shutdown: 'Server shutting down', failed: 'Call failed', connection_lost: 'Connection lost',
  };
  return t[info.reason] ?? info.reason;
}

const wsUrl = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${location.pathname.replace(/[^/]*$/, '')}`;
let terminal: TerminalClient | null = null;
let audio: AudioEngine | null = null;
let call: CallSession | null = null;
let invitation: Invitation | null = null;
let camera: VideoSender | null = null;
let screen: VideoSender | null = null;
let content: CallSession | null = null;
let remote: VideoReceiver | null = null;

const ui = {
  signin: $<HTMLFormElement>('signin'),
  phone: $('phone'),
  call: $<HTMLButtonElement>('call'),
  hangup: $<HTMLButtonElement>('hangup'),
  mute: $<HTMLButtonElement>('mute'),
  share: $<HTMLButtonElement>('share'),
  videoOn: $<HTMLInputElement>('video-on'),
  remote: $<HTMLCanvasElement>('remote'),
  incoming: $('incoming'),
  incomingText: $('incoming-text'),
  stats: $('stats'),
};

function stopVideo(): void {
  camera?.close();
  screen?.close();
  remote?.close();
  void content?.hangup();
  camera = screen = remote = null;
  content = null;
  ui.remote.classList.add('hidden');
  ui.share.textContent = 'Share screen';
}

/** A call with video: the camera goes out, the room's picture comes in on the canvas. */
async function startVideo(c: CallSession): Promise<void> {
  if (!c.videoCodec) return;
  ui.remote.classList.remove('hidden');
  ui.share.disabled = false;
  remote = new VideoReceiver(c, ui.remote);
  const cam = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 15 } });
  const s = cam.getVideoTracks()[0]?.getSettings();
  camera = VideoSender.start(c, cam, s?.width ?? 320, s?.height ?? 240);
  if (!camera) errorEl.textContent = 'This browser cannot encode video (WebCodecs): audio only.';
}

function inCall(on: boolean): void {
  ui.call.disabled = on;
  ui.hangup.disabled = !on;
  ui.mute.disabled = !on;
  if (!on) {
    ui.share.disabled = true;
    stopVideo();
  }
  if (!on && audio) {
    audio.muted = false;
    ui.mute.textContent = 'Mute';
  }
}

function renderStats(s: PlaybackStats): void {
  ui.stats.textContent = call ? `jitter buffer ${s.depthMs} ms (target ${s.targetMs} ms)\nconcealed ${s.concealed}  dropped ${s.dropped}  received ${s.received}\nsent ${call.sent} frames` : '';
}

function adopt(c: CallSession): void {
  call = c;
  inCall(true);
  c.on('audio', (payload) => audio?.play(payload));
  c.on('ringing', () => setState(`ringing ${c.to}…`, 'busy'));
  c.on('answered', () => setState(`in call with ${c.to}`, 'ok'));
  c.on('dtmf', (d) => (errorEl.textContent = `DTMF received: ${d}`));
  // progress may have come while the media connections were being bound
  if (c.state === 'answered') setState(`in call with ${c.to}`, 'ok');
  else if (c.state === 'ringing') setState(`ringing ${c.to}…`, 'busy');
  c.on('hangup', (info) => {
    if (call !== c) return;
    call = null;
    inCall(false);
    renderStats(audio?.stats ?? { depthMs: 0, targetMs: 0, concealed: 0, dropped: 0, received: 0 });
    if (terminal) setState(`registered — ${hangupText(info)}`, info.reason === 'normal' || info.reason === 'remote' ? 'ok' : 'bad');
  });
}

async function ensureAudio(): Promise<AudioEngine> {
  if (!audio) {
    audio = await AudioEngine.start(new URL('worklet.js', location.href).toString());
    audio.onFrame = (pcm) => call?.sendAudio(new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength));
    audio.onStats = renderStats;
  }
  if (audio.context.state === 'suspended') await audio.context.resume();
  return audio;
}

ui.signin.addEventListener('submit', (ev) => {
  ev.preventDefault();
  errorEl.textContent = '';
  const number = $<HTMLInputElement>('number').value.trim();
  const password = $<HTMLInputElement>('password').value;
  const name = $<HTMLInputElement>('name').value.trim() || undefined;
  setState('connecting…', 'busy');
  const t = new TerminalClient({ url: wsUrl, number, password, name, webSocket: (url) => new WebSocket(url) as unknown as WebSocketLike });
  t.on('closed', (err) => {
    if (terminal !== t) return;
    terminal = null;
    call = null;
    inCall(false);
    ui.incoming.style.display = 'none';
    setState('connection lost', 'bad');
    if (err) showError(err);
    ui.signin.classList.remove('hidden');
    ui.phone.classList.add('hidden');
  });
  t.on('reconnecting', () => setState('connection lost — reconnecting…', 'bad'));
  t.on('resumed', () => setState(call ? `in call with ${call.to}` : 'registered', 'ok'));
  t.on('pbx', (s) => setState(s === 'up' ? 'registered' : 'conference server unreachable', s === 'up' ? 'ok' : 'bad'));
  t.on('incoming', (inv) => {
    invitation = inv;
    ui.incomingText.textContent = `Incoming ${inv.video.length ? 'video ' : ''}call from ${inv.from.name || inv.from.number || 'the PBX'}`;
    ui.incoming.style.display = 'block';
    setState('ringing', 'ring');
    inv.once('ended', (info) => {
      if (invitation !== inv) return;
      invitation = null;
      ui.incoming.style.display = 'none';
      setState(`registered — ${hangupText(info)}`, 'ok');
    });
  });
  t.connect()
    .then(() => t.register())
    .then((r) => {
      terminal = t;
      setState(`registered as ${r.name}`, 'ok');
      ui.signin.classList.add('hidden');
      ui.phone.classList.remove('hidden');
    })
    .catch((err: unknown) => {
      setState('signed out', 'bad');
      showError(err);
      t.close();
    });
});

ui.call.addEventListener('click', () => {
  if (!terminal) return;
  errorEl.textContent = '';
  const to = $<HTMLInputElement>('dial').value.trim();
  setState(`calling ${to}…`, 'busy');
  ensureAudio()
    .then(() => terminal!.call(to, ui.videoOn.checked ? { codecs: ['L16/16000'], video: ['H264/90000'] } : { codecs: ['L16/16000'] }))
    .then((c) => {
      adopt(c);
      return startVideo(c);
    })
    .catch((err: unknown) => {
      setState('registered', 'ok');
      showError(err);
    });
});

$('accept').addEventListener('click', () => {
  const inv = invitation;
  if (!inv) return;
  invitation = null;
  ui.incoming.style.display = 'none';
  ensureAudio()
    .then(() => inv.accept(ui.videoOn.checked && inv.video.includes('H264/90000') ? { codecs: ['L16/16000'], video: ['H264/90000'] } : { codecs: ['L16/16000'] }))
    .then((c) => {
      adopt(c);
      return startVideo(c);
    })
    .catch(showError);
});
$('reject').addEventListener('click', () => {
  invitation?.reject('declined');
  invitation = null;
  ui.incoming.style.display = 'none';
  setState('registered', 'ok');
});
ui.hangup.addEventListener('click', () => void call?.hangup());
ui.share.addEventListener('click', () => {
  if (content) {
    stopShare();
    return;
  }
  if (!terminal || !call) return;
  const c = call;
  navigator.mediaDevices
    .getDisplayMedia({ video: { width: 1280, height: 720, frameRate: 15 } })
    .then(async (stream) => {
      const share = await terminal!.share(c);
      content = share;
      const s = stream.getVideoTracks()[0]?.getSettings();
      screen = VideoSender.start(share, stream, s?.width ?? 1280, s?.height ?? 720);
      ui.share.textContent = 'Stop sharing';
      stream.getVideoTracks()[0]?.addEventListener('ended', stopShare);
      share.once('hangup', () => {
        if (content === share) stopShare();
      });
    })
    .catch(showError);
});

function stopShare(): void {
  screen?.close();
  screen = null;
  const c = content;
  content = null;
  void c?.hangup();
  ui.share.textContent = 'Share screen';
}

ui.mute.addEventListener('click', () => {
  if (!audio) return;
  audio.muted = !audio.muted;
  ui.mute.textContent = audio.muted ? 'Unmute' : 'Mute';
});
$('signout').addEventListener('click', () => {
  const t = terminal;
  terminal = null;
  t?.close();
  setState('signed out', '');
  ui.signin.classList.remove('hidden');
  ui.phone.classList.add('hidden');
});

const keypad = $('keypad');
for (const d of ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#']) {
  const b = document.createElement('button');
  b.textContent = d;
  b.type = 'button';
  b.addEventListener('click', () => call?.sendDtmf(d));
  keypad.append(b);
}

// for automated checks (the end-to-end tests) and the curious: what the page hears and holds
Object.assign(window, {
  confmux: {
    level: (freq: number) => audio?.level(freq) ?? -Infinity,
    stats: () => ({
      ...(audio?.stats ?? {}),
      sent: call?.sent ?? 0,
      received: call?.received ?? 0,
      videoSent: camera?.frames ?? 0,
      keyframesSent: camera?.keyframes ?? 0,
      keyframeRequests: camera?.keyRequests ?? 0,
      videoDrawn: remote?.drawn ?? 0,
      contentSent: screen?.frames ?? 0,
      state: stateEl.textContent,
    }),
  },
});
