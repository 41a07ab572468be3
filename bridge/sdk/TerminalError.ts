/** An error the bridge reported (a stable code from the catalogue) or the SDK detected. */
export class TerminalError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'TerminalError';
    this.code = code;
  }

  /** From a WebSocket close: our reasons read "CODE: message". */
  static fromClose(code: number, reason: string): TerminalError {
    const m = /^([A-Z_]+): (.*)$/s.exec(reason);
    if (m) return new TerminalError(m[1]!, m[2]!);
    if (code === 1009) return new TerminalError('FRAME_TOO_LARGE', 'message larger than the bridge accepts');
    return new TerminalError('CONNECTION_CLOSED', `connection closed (${code}${reason ? ` ${reason}` : ''})`);
  }
}
