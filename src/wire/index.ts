/** Pure codecs: link frames and control bodies (no I/O). */
export {
  CloseCode, DEFAULT_MAX_BODY_BYTES, FRAME_VERSION, FrameDecoder, FrameFlags, FrameType, HEADER_BYTES,
  decodeCredit, encodeCredit, encodeFrame, header, writeHeader,
  type CloseCodeValue, type FrameHandler, type FrameTypeValue,
} from './frame.js';
export { bytes, decodeControl, encodeControl, num, str, strList } from './control.js';
