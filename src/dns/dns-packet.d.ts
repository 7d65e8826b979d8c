/**
 * Type declarations for the parts of the `dns-packet` npm package (5.x, plain
 * JavaScript with no bundled types) that ztedge uses: whole-message decode and
 * encode, and single-record encode. Only what src/dns and its tests call is
 * declared, so a wrong use fails to typecheck instead of at run time.
 */
declare module 'dns-packet' {
  /** A question as decoded: `type` and `class` are names (`A`, `IN`; unknown values `UNKNOWN_<n>`). */
  export interface Question {
    name: string;
    type: string;
    class?: string;
  }

  /** A resource record. `data` depends on `type` (A/AAAA: address text; PTR/CNAME: a name). OPT uses the EDNS fields. */
  export interface Answer {
    name: string;
    type: string;
    class?: string;
    ttl?: number;
    data?: unknown;
    flush?: boolean;
    /** OPT only (RFC 6891 §6.1.2). */
    udpPayloadSize?: number;
    extendedRcode?: number;
    ednsVersion?: number;
    flags?: number;
    options?: unknown[];
  }

  /** A whole DNS message. `flags` holds the 15 low bits of the header's second word (opcode, AA, TC, RD, RA, Z, AD, CD, RCODE). */
  export interface Packet {
    type?: 'query' | 'response';
    id?: number;
    flags?: number;
    rcode?: string;
    opcode?: string;
    flag_tc?: boolean;
    flag_aa?: boolean;
    flag_rd?: boolean;
    flag_ra?: boolean;
    questions?: Question[];
    answers?: Answer[];
    authorities?: Answer[];
    additionals?: Answer[];
  }

  interface Codec<T> {
    encode(value: T, buf?: Buffer, offset?: number): Buffer;
    decode(buf: Buffer, offset?: number): T;
    encodingLength(value: T): number;
  }

  /** Encodes a message; allocates a buffer of the exact size when none is given. Throws on values it cannot encode. */
  export function encode(packet: Packet, buf?: Buffer, offset?: number): Buffer;
  export namespace encode {
    /** Bytes written by the last call. */
    let bytes: number;
  }
  /** Decodes a message. Throws (plain Error) on malformed input. */
  export function decode(buf: Buffer, offset?: number): Packet;
  export namespace decode {
    let bytes: number;
  }
  export function encodingLength(packet: Packet): number;
  /** `encode` with the 2-byte length prefix of DNS over TCP (RFC 1035 §4.2.2). */
  export function streamEncode(packet: Packet): Buffer;
  /** `decode` of a length-prefixed message; null when the buffer holds less than the whole message. */
  export function streamDecode(buf: Buffer): Packet | null;

  export const answer: Codec<Answer> & { encode: { bytes: number } };
  export const question: Codec<Question> & { decode: { bytes: number } };
  export const name: Codec<string> & { encode: { bytes: number } };

  export const AUTHORITATIVE_ANSWER: number;
  export const TRUNCATED_RESPONSE: number;
  export const RECURSION_DESIRED: number;
  export const RECURSION_AVAILABLE: number;
  export const AUTHENTIC_DATA: number;
  export const CHECKING_DISABLED: number;
  export const DNSSEC_OK: number;
}
