/**
 * The userspace TCP of the tun interception mode (sans-I/O): the only door
 * into src/stack/tcp. The shell builds one TcpTable, feeds it parsed segments
 * and clock ticks, and bridges each accepted TcpConnection to a circuit.
 */
export { TcpFlags, type TcpOptions, type TcpSegmentIn, type TcpSegmentOut } from './segment.js';
export { TCP_DEFAULTS, resolveTcpConfig, windowShiftFor, MAX_WINDOW_SHIFT, type TcpConfig } from './config.js';
export { TcpConnection, type TcpConnOwner } from './connection.js';
export { TcpTable, DEFAULT_MAX_CONNECTIONS, type TcpSynVerdict, type TcpTableHooks, type TcpTableOptions } from './table.js';
export {
  TcpState,
  TCP_STATE_NAMES,
  TCP_DROP_REASONS,
  TCP_CLOSE_REASONS,
  TcpCounters,
  type TcpStateValue,
  type TcpDropReason,
  type TcpCloseReason,
  type TcpHandler,
  type TcpOutput,
} from './state.js';
export { seqAdd, seqDiff, seqLt, seqLe, seqGt, seqGe, seqMax, seqMin, seqInWindow, seqWrap } from './seq.js';
export { RttEstimator } from './rtt.js';
