/** Call ids: 12 characters of base64url (72 random bits), made by the bridge for every call. */
import { randomBytes } from 'node:crypto';

export function newCallId(): string {
  return randomBytes(9).toString('base64url');
}
