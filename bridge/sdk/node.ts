/** The SDK in Node: TerminalClient over the `ws` package. */
import WebSocket from 'ws';
import { TerminalClient, type TerminalClientOptions, type WebSocketLike } from './TerminalClient.ts';

export function nodeWebSocket(url: string, options: WebSocket.ClientOptions = {}): WebSocketLike {
  return new WebSocket(url, { perMessageDeflate: false, ...options }) as unknown as WebSocketLike;
}

/** A terminal in Node; `webSocketOptions` reach every connection (e.g. `ca` for a private wss:// certificate). */
export function createNodeTerminal(opts: Omit<TerminalClientOptions, 'webSocket'> & { webSocketOptions?: WebSocket.ClientOptions }): TerminalClient {
  const { webSocketOptions, ...rest } = opts;
  return new TerminalClient({ ...rest, webSocket: (url) => nodeWebSocket(url, webSocketOptions) });
}

export { TerminalClient } from './TerminalClient.ts';
export { CallSession } from './CallSession.ts';
export { TerminalError } from './TerminalError.ts';
export { Invitation } from './Invitation.ts';
