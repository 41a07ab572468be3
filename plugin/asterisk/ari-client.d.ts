// The little of ari-client 2.2.0 that AriClientLink touches (the package ships no types).
declare module 'ari-client' {
  import type { EventEmitter } from 'node:events';
  type Op = (options?: Record<string, unknown>) => Promise<unknown>;
  export interface Client extends EventEmitter {
    start(apps: string | string[]): Promise<void>;
    stop(): void;
    ping(): void;
    channels: Record<string, Op>;
    bridges: Record<string, Op>;
    asterisk: Record<string, Op>;
    applications: Record<string, Op>;
    deviceStates: Record<string, Op>;
    endpoints: Record<string, Op>;
    _ws?: { terminate(): void; close(): void };
  }
  export function connect(url: string, user: string, pass: string): Promise<Client>;
  const ari: { connect: typeof connect };
  export default ari;
}
