/**
 * The DNS handler of the tun mode: one query in, one decision out. Answers
 * intercepted names from the pool, leaves everything else to the upstream
 * forwarder (or refuses it), and never throws on what a client sends.
 * Pure: no sockets, no timers, no logging; the listener (listener.ts) feeds
 * it datagrams and TCP messages and carries out the decision.
 *
 * Header (RFC 1035 §4.1.1), the part this file reads and writes by hand:
 *
 *    0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
 *   +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
 *   |                      ID                       |
 *   +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
 *   |QR|   OPCODE  |AA|TC|RD|RA| Z|AD|CD|   RCODE   |
 *   +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
 *   |             QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT |  (4 × 16 bits)
 *   +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
 *   | question: QNAME (labels), QTYPE, QCLASS        |  copied verbatim into replies
 *
 * Decisions, in order:
 *   < 2 bytes, or QR=1 (a response: answering it could loop)   → drop
 *   < 12 bytes, QDCOUNT ≠ 1, undecodable                        → FORMERR, id kept
 *   OPCODE ≠ QUERY                                              → NOTIMP
 *   EDNS version > 0                                            → BADVERS (RFC 6891 §6.1.3)
 *   PTR under in-addr.arpa for a pool address                   → PTR, or NXDOMAIN if unused
 *   intercepted name, class IN/ANY: A or ANY                    → A from the pool (SERVFAIL if exhausted)
 *   intercepted name, any other type (AAAA included)            → NOERROR, no answer (NODATA):
 *     the pool is IPv4, and a client that gets no AAAA uses the A
 *   anything else                                               → forward, or REFUSED without upstream
 *
 * Replies echo the question bytes as received (case included, for clients
 * that randomise it: draft-vixie-dnsext-dns0x20), carry AA for names we own,
 * copy RD (RFC 1035 §4.1.1), set RA only when an upstream is configured, and
 * carry an OPT record when the query had one (RFC 6891 §7). NODATA and
 * NXDOMAIN carry no SOA, so resolvers do not cache them (RFC 2308 §5): the
 * table changes with policy.
 *
 * TTL: 60 s by default. Short, so a client drops a name the policy no longer
 * intercepts within a minute; not so short that every connection costs a
 * query. The address itself stays put far longer (pool.ts), so a client that
 * keeps a stale answer still reaches the same name.
 */
import * as dnsPacket from 'dns-packet';
import { formatIpv4 } from './pool.js';
import type { InterceptedNames } from './names.js';
import { normalizeName } from './names.js';

/** Default TTL of our A and PTR answers, in seconds. */
export const DEFAULT_TTL_SECONDS = 60;
/** UDP payload size we advertise in OPT: the DNS flag day 2020 value, no IP fragmentation on common paths. */
export const EDNS_UDP_PAYLOAD_BYTES = 1232;
/** Largest UDP reply to a client without EDNS (RFC 1035 §2.3.4). */
export const CLASSIC_UDP_BYTES = 512;
/** Largest UDP reply we pass on whatever a client advertises: a common resolver cap, far below the 65 507-byte datagram limit. */
export const MAX_UDP_BYTES = 4096;
export const HEADER_BYTES = 12;

/** RCODEs (RFC 1035 §4.1.1; BADVERS: RFC 6891 §9, extended). */
export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  BADVERS: 16,
} as const;

/** RR types and classes this handler acts on (RFC 1035 §3.2.2–3.2.5, RFC 3596 §2.1). */
const TYPE_A = 1;
const TYPE_PTR = 12;
const TYPE_ANY = 255;
const CLASS_IN = 1;
const CLASS_ANY = 255;

const FLAG_QR = 0x8000;
const MASK_OPCODE = 0x7800;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
/** OPT TTL-field flag DO (RFC 3225 §3): copied from query to response. */
const OPT_FLAG_DO = 0x8000;
/** Smallest possible resource record: root name (1) + type, class, TTL, RDLENGTH (10). */
const MIN_RR_BYTES = 11;

const REVERSE_SUFFIX = '.in-addr.arpa';

/** Why a query got no reply at all. */
export type DnsDropReason = 'short' | 'response';

/** What the listener should do with a query. */
export type DnsDecision =
  /** Send `reply` (owned) back to the client. */
  | { readonly kind: 'reply'; readonly reply: Buffer; readonly rcode: number }
  /** Hand the query (borrowed: the caller's buffer) to the forwarder. */
  | { readonly kind: 'forward'; readonly query: Buffer; readonly edns: boolean; readonly maxUdpBytes: number }
  /** Send nothing. */
  | { readonly kind: 'drop'; readonly reason: DnsDropReason };

/** Per-outcome counters of a handler (read them; never reset behind a reader's back). */
export class DnsCounters {
  queries = 0;
  answered = 0;
  nodata = 0;
  nxdomain = 0;
  forwarded = 0;
  refused = 0;
  formerr = 0;
  notimp = 0;
  badvers = 0;
  /** Intercepted names that got SERVFAIL because the pool had no address to give. */
  poolExhausted = 0;
  dropShort = 0;
  dropResponse = 0;
}

export interface DnsHandlerOptions {
  /** Whether non-intercepted names go upstream (true) or get REFUSED (false). */
  forwarding: boolean;
  /** TTL of our answers. Default {@link DEFAULT_TTL_SECONDS}. */
  ttlSeconds?: number;
}

/**
 * End of the question that starts at `offset` (QNAME, QTYPE, QCLASS), or -1
 * when it runs past the buffer, is longer than 255 bytes (RFC 1035 §2.3.4),
 * or holds anything but plain labels: a compression pointer could only point
 * into the header here (RFC 1035 §4.1.4), and 0x40/0x80 prefixes are not labels.
 */
export function questionEnd(buf: Buffer, offset: number): number {
  let o = offset;
  for (;;) {
    if (o >= buf.length || o - offset >= 255) return -1;
    const len = buf[o]!;
    if (len === 0) break;
    if ((len & 0xc0) !== 0) return -1;
    o += 1 + len;
  }
  // o is on the root label; QTYPE and QCLASS follow it.
  return o + 5 <= buf.length ? o + 5 : -1;
}

/**
 * An error reply to `query`: its id, opcode and RD kept, QR set, `rcode`,
 * and its question echoed when it is readable. For a query too short to
 * have an id there is no reply (undefined). Never throws.
 *
 * @example
 * ```ts
 * errorReply(query, Rcode.SERVFAIL, true) // SERVFAIL with an OPT record
 * ```
 */
export function errorReply(query: Buffer, rcode: number, edns = false, recursionAvailable = false): Buffer | undefined {
  if (query.length < 2) return undefined;
  let end = HEADER_BYTES;
  if (query.length >= HEADER_BYTES && query.readUInt16BE(4) === 1) {
    const q = questionEnd(query, HEADER_BYTES);
    if (q > 0) end = q;
  }
  return buildReply(query, end, rcode, recursionAvailable ? FLAG_RA : 0, undefined, edns ? 0 : -1);
}

/**
 * Writes header + question (copied from `query[12, questionEnd)`) + answers + OPT.
 * `doFlag` < 0: no OPT record; otherwise the OPT flags word to send.
 */
function buildReply(query: Buffer, qEnd: number, rcode: number, flags: number, answers: dnsPacket.Answer[] | undefined, doFlag: number): Buffer {
  const opt: dnsPacket.Answer | undefined = doFlag < 0 ? undefined : {
    name: '.', type: 'OPT', udpPayloadSize: EDNS_UDP_PAYLOAD_BYTES,
    // RFC 6891 §6.1.3: the upper 8 bits of the 12-bit RCODE travel in OPT.
    extendedRcode: rcode >> 4, ednsVersion: 0, flags: doFlag, options: [],
  };
  const question = qEnd > HEADER_BYTES && query.length >= qEnd ? qEnd - HEADER_BYTES : 0;
  let bytes = HEADER_BYTES + question;
  if (answers !== undefined) for (const a of answers) bytes += dnsPacket.answer.encodingLength(a);
  if (opt !== undefined) bytes += dnsPacket.answer.encodingLength(opt);
  const out = Buffer.alloc(bytes);
  // A query shorter than the header still has its id in the first 2 bytes; the rest of ours is written fresh.
  out[0] = query[0]!;
  out[1] = query[1]!;
  const qFlags = query.length >= 4 ? query.readUInt16BE(2) : 0;
  out.writeUInt16BE(FLAG_QR | (qFlags & (MASK_OPCODE | FLAG_RD)) | flags | (rcode & 0xf), 2);
  out.writeUInt16BE(question > 0 ? 1 : 0, 4);
  out.writeUInt16BE(answers?.length ?? 0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(opt === undefined ? 0 : 1, 10);
  let o = HEADER_BYTES;
  if (question > 0) o += query.copy(out, o, HEADER_BYTES, qEnd);
  if (answers !== undefined) {
    for (const a of answers) {
      dnsPacket.answer.encode(a, out, o);
      o += dnsPacket.answer.encode.bytes;
    }
  }
  if (opt !== undefined) dnsPacket.answer.encode(opt, out, o);
  return out;
}

/** Pool address of a reverse name `D.C.B.A.in-addr.arpa` (normalised), or undefined. */
function reverseAddress(name: string): number | undefined {
  if (!name.endsWith(REVERSE_SUFFIX)) return undefined;
  const labels = name.slice(0, -REVERSE_SUFFIX.length).split('.');
  if (labels.length !== 4) return undefined;
  let ip = 0;
  for (let i = 3; i >= 0; i--) {
    const label = labels[i]!;
    if (!/^(?:0|[1-9]\d{0,2})$/.test(label) || Number(label) > 255) return undefined;
    ip = ip * 256 + Number(label);
  }
  return ip;
}

/**
 * Answers DNS queries for intercepted names; see the file comment for the rules.
 *
 * @example
 * ```ts
 * const handler = new DnsHandler(names, { forwarding: upstream.length > 0 });
 * const d = handler.answer(datagram, performance.now());
 * if (d.kind === 'reply') socket.send(d.reply, port, address);
 * ```
 */
export class DnsHandler {
  readonly counters = new DnsCounters();
  private readonly ttlSeconds: number;
  private readonly forwarding: boolean;
  private readonly raFlag: number;

  constructor(private readonly names: InterceptedNames, opts: DnsHandlerOptions) {
    this.forwarding = opts.forwarding;
    this.ttlSeconds = opts.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    this.raFlag = opts.forwarding ? FLAG_RA : 0;
  }

  /** Decides what to do with one query (borrowed: not kept past the call, except as `forward.query`). Never throws. */
  answer(query: Buffer, nowMs: number): DnsDecision {
    const c = this.counters;
    c.queries++;
    if (query.length < 2) { c.dropShort++; return { kind: 'drop', reason: 'short' }; }
    if (query.length >= 3 && (query[2]! & 0x80) !== 0) { c.dropResponse++; return { kind: 'drop', reason: 'response' }; }
    if (query.length < HEADER_BYTES) return this.formerr(query);
    const flags = query.readUInt16BE(2);
    // RFC 1035 §4.1.1: only standard queries (opcode 0) are served; NOTIMP for the rest (IQUERY, STATUS, NOTIFY, UPDATE).
    if ((flags & MASK_OPCODE) !== 0) {
      c.notimp++;
      return this.reply(buildReply(query, HEADER_BYTES, Rcode.NOTIMP, this.raFlag, undefined, -1), Rcode.NOTIMP);
    }
    // RFC 9619: a query holds exactly one question.
    if (query.readUInt16BE(4) !== 1) return this.formerr(query);
    const qEnd = questionEnd(query, HEADER_BYTES);
    if (qEnd < 0) return this.formerr(query);
    const records = query.readUInt16BE(6) + query.readUInt16BE(8) + query.readUInt16BE(10);
    // Counts that cannot fit are refused before decoding allocates arrays for them.
    if (records * MIN_RR_BYTES > query.length - qEnd) return this.formerr(query);

    let packet: dnsPacket.Packet;
    try {
      packet = dnsPacket.decode(query);
      if (dnsPacket.decode.bytes > query.length) return this.formerr(query);
    } catch {
      return this.formerr(query);
    }
    const qname = packet.questions?.[0]?.name;
    if (qname === undefined) return this.formerr(query);

    // EDNS (RFC 6891): at most one OPT (§6.1.1), version 0 only (§6.1.3).
    let doFlag = -1;
    let maxUdpBytes = CLASSIC_UDP_BYTES;
    for (const rr of packet.additionals ?? []) {
      if (rr.type !== 'OPT') continue;
      if (doFlag >= 0) return this.formerr(query);
      doFlag = (rr.flags ?? 0) & OPT_FLAG_DO;
      // RFC 6891 §6.2.5: sizes below 512 mean 512.
      maxUdpBytes = Math.min(MAX_UDP_BYTES, Math.max(CLASSIC_UDP_BYTES, rr.udpPayloadSize ?? 0));
      if ((rr.ednsVersion ?? 0) !== 0) {
        c.badvers++;
        return this.reply(buildReply(query, qEnd, Rcode.BADVERS, this.raFlag, undefined, doFlag), Rcode.BADVERS);
      }
    }

    const qtype = query.readUInt16BE(qEnd - 4);
    const qclass = query.readUInt16BE(qEnd - 2);
    const name = normalizeName(qname);
    if (name !== undefined && (qclass === CLASS_IN || qclass === CLASS_ANY)) {
      const own = this.ownAnswer(query, qEnd, qname, name, qtype, doFlag, nowMs);
      if (own !== undefined) return own;
    }
    if (this.forwarding) {
      c.forwarded++;
      return { kind: 'forward', query, edns: doFlag >= 0, maxUdpBytes };
    }
    // RFC 8906 §3.1.5 allows REFUSED for names a server does not serve.
    c.refused++;
    return this.reply(buildReply(query, qEnd, Rcode.REFUSED, 0, undefined, doFlag), Rcode.REFUSED);
  }

  /**
   * Our answer for a name we own (intercepted, or a pool address's reverse name); undefined: not ours.
   * `qname` is the name as asked (its case is kept in answers), `name` its normalised form.
   */
  private ownAnswer(query: Buffer, qEnd: number, qname: string, name: string, qtype: number, doFlag: number, nowMs: number): DnsDecision | undefined {
    const c = this.counters;
    const pool = this.names.pool;
    const reverse = reverseAddress(name);
    if (reverse !== undefined) {
      // We are the authority for the whole pool's reverse names (RFC 1035 §3.5).
      if (!pool.contains(reverse)) return undefined;
      const owner = pool.nameOf(reverse);
      if (owner === undefined) {
        c.nxdomain++;
        return this.reply(buildReply(query, qEnd, Rcode.NXDOMAIN, FLAG_AA | this.raFlag, undefined, doFlag), Rcode.NXDOMAIN);
      }
      const answers = qtype === TYPE_PTR || qtype === TYPE_ANY
        ? [{ name: qname, type: 'PTR', class: 'IN', ttl: this.ttlSeconds, data: owner }]
        : undefined;
      return this.authoritative(query, qEnd, answers, doFlag);
    }
    const match = this.names.lookup(name);
    if (match === undefined) return undefined;
    if (qtype !== TYPE_A && qtype !== TYPE_ANY) return this.authoritative(query, qEnd, undefined, doFlag);
    const ip = pool.addressFor(match.name, nowMs);
    if (ip === 'exhausted') {
      c.poolExhausted++;
      return this.reply(buildReply(query, qEnd, Rcode.SERVFAIL, this.raFlag, undefined, doFlag), Rcode.SERVFAIL);
    }
    return this.authoritative(query, qEnd, [{ name: qname, type: 'A', class: 'IN', ttl: this.ttlSeconds, data: formatIpv4(ip) }], doFlag);
  }

  private authoritative(query: Buffer, qEnd: number, answers: dnsPacket.Answer[] | undefined, doFlag: number): DnsDecision {
    if (answers === undefined) this.counters.nodata++;
    else this.counters.answered++;
    return this.reply(buildReply(query, qEnd, Rcode.NOERROR, FLAG_AA | this.raFlag, answers, doFlag), Rcode.NOERROR);
  }

  private formerr(query: Buffer): DnsDecision {
    this.counters.formerr++;
    // RFC 1035 §4.1.1: FORMERR, the query could not be interpreted; echo nothing we could not parse.
    return this.reply(buildReply(query, HEADER_BYTES, Rcode.FORMERR, this.raFlag, undefined, -1), Rcode.FORMERR);
  }

  private reply(reply: Buffer, rcode: number): DnsDecision {
    return { kind: 'reply', reply, rcode };
  }
}

/**
 * The header and question of `reply` with TC set and every record dropped: what
 * a UDP client gets when the whole reply does not fit, so it asks again over
 * TCP (RFC 1035 §4.2.1, RFC 7766 §5). Owned copy.
 */
export function truncateReply(reply: Buffer): Buffer {
  let end = Math.min(reply.length, HEADER_BYTES);
  if (reply.length >= HEADER_BYTES && reply.readUInt16BE(4) === 1) {
    const q = questionEnd(reply, HEADER_BYTES);
    if (q > 0) end = q;
  }
  const out = Buffer.alloc(Math.max(end, HEADER_BYTES));
  reply.copy(out, 0, 0, end);
  out.writeUInt16BE(out.readUInt16BE(2) | FLAG_TC, 2);
  out.writeUInt16BE(end > HEADER_BYTES ? 1 : 0, 4);
  out.fill(0, 6, HEADER_BYTES);
  return out;
}

/** True when a DNS message's TC bit is set (RFC 1035 §4.1.1). */
export function isTruncated(msg: Buffer): boolean {
  return msg.length >= 4 && (msg.readUInt16BE(2) & FLAG_TC) !== 0;
}
