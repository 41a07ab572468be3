/** The SDK in Node: TerminalClient over the `ws` package. */
import WebSocket from 'ws';
import { TerminalClient, type TerminalClientOptions, type WebSocketLike } from './TerminalClient.ts';

export function nodeWebSocket(url: string): WebSocketLike {
  return new WebSocket(url, { perMessageDeflate: false }) as unknown as WebSocketLike;
}

export function createNodeTerminal(opts: Omit<TerminalClientOptions, 'webSocket'>): TerminalClient {
  return new TerminalClient({ ...opts, webSocket: nodeWebSocket });
}

export { TerminalClient } from './TerminalClient.ts';
export { CallSession } from './CallSession.ts';
export { TerminalError } from './TerminalError.ts';
export { Invitation } from './Invitation.ts';
