/**
 * Initial sequence numbers for the TCP table (RFC 6528 §3):
 * ISN = M + F(localip, localport, remoteip, remoteport, secretkey), with M a
 * 4 µs clock and F a keyed hash, so an off-path host cannot guess the ISN of
 * a connection it does not see. The clock comes from the caller's `now`.
 */
import { createHmac, randomBytes } from 'node:crypto';

export class IsnGenerator {
  private readonly secret: Buffer;
  private readonly tuple = Buffer.alloc(12);

  /** @param secret key for F (16+ random bytes); a fresh random one by default. */
  constructor(secret?: Buffer) {
    this.secret = secret ?? randomBytes(16);
  }

  /** ISN for a connection, `now` in ms (M ticks every 4 µs: 250 per ms). */
  next(now: number, localIp: number, localPort: number, remoteIp: number, remotePort: number): number {
    const t = this.tuple;
    t.writeUInt32BE(localIp >>> 0, 0);
    t.writeUInt16BE(localPort & 0xffff, 4);
    t.writeUInt32BE(remoteIp >>> 0, 6);
    t.writeUInt16BE(remotePort & 0xffff, 10);
    const f = createHmac('sha256', this.secret).update(t).digest().readUInt32BE(0);
    const m = Math.floor(now * 250) % 0x1_0000_0000;
    return (m + f) >>> 0;
  }
}
