/** A UDP socket bound on `address` (IPv4 or IPv6) and `port` (0: any free port). */
import { createSocket, type Socket } from 'node:dgram';

export async function bindUdp(address: string, port = 0): Promise<Socket> {
  const socket = createSocket({ type: address.includes(':') ? 'udp6' : 'udp4' });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return socket;
}
