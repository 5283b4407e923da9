import { hash } from "node:crypto";

/**
 * The hash functions behind Graphite's consistent-hash routers, over UTF-8 bytes.
 *
 * Every function takes `(bytes, start, end)` and allocates nothing, so the relay can
 * hash a metric name straight out of a receive buffer. What each reference computes
 * (see shared/specs/consistent-hashing.md §5.1, §6):
 *
 * | algo          | graphite-carbon 1.1.7                | carbon-c-relay 3.7.3 (amd64)            |
 * |---------------|--------------------------------------|-----------------------------------------|
 * | carbon_ch     | md5 bytes 0-1, big-endian (16 bit)   | same                                    |
 * | fnv1a_ch      | FNV-1a 32, folded to 16 bit          | FNV-1a 32 over *sign-extended* bytes    |
 * | mmh3_ch       | MurmurHash3 x86_32 seed 0, signed    | (none)                                  |
 * | jump_fnv1a_ch | (none)                               | FNV-1a 64 (sign-extended) + jump hash   |
 */

/** Scratch for md5: one 16-word block and the four state words. Module-level: no per-call allocation. */
const md5Block = new Int32Array(16);
const md5State = new Int32Array(4);

function md5Compress(x: Int32Array, st: Int32Array): void {
  let a = st[0]!;
  let b = st[1]!;
  let c = st[2]!;
  let d = st[3]!;
  const x0 = x[0]!;
  const x1 = x[1]!;
  const x2 = x[2]!;
  const x3 = x[3]!;
  const x4 = x[4]!;
  const x5 = x[5]!;
  const x6 = x[6]!;
  const x7 = x[7]!;
  const x8 = x[8]!;
  const x9 = x[9]!;
  const x10 = x[10]!;
  const x11 = x[11]!;
  const x12 = x[12]!;
  const x13 = x[13]!;
  const x14 = x[14]!;
  const x15 = x[15]!;
  a = (a + ((b & c) | (~b & d)) + x0 + -0x28955b88) | 0;
  a = (((a << 7) | (a >>> 25)) + b) | 0;
  d = (d + ((a & b) | (~a & c)) + x1 + -0x173848aa) | 0;
  d = (((d << 12) | (d >>> 20)) + a) | 0;
  c = (c + ((d & a) | (~d & b)) + x2 + 0x242070db) | 0;
  c = (((c << 17) | (c >>> 15)) + d) | 0;
  b = (b + ((c & d) | (~c & a)) + x3 + -0x3e423112) | 0;
  b = (((b << 22) | (b >>> 10)) + c) | 0;
  a = (a + ((b & c) | (~b & d)) + x4 + -0xa83f051) | 0;
  a = (((a << 7) | (a >>> 25)) + b) | 0;
  d = (d + ((a & b) | (~a & c)) + x5 + 0x4787c62a) | 0;
  d = (((d << 12) | (d >>> 20)) + a) | 0;
  c = (c + ((d & a) | (~d & b)) + x6 + -0x57cfb9ed) | 0;
  c = (((c << 17) | (c >>> 15)) + d) | 0;
  b = (b + ((c & d) | (~c & a)) + x7 + -0x2b96aff) | 0;
  b = (((b << 22) | (b >>> 10)) + c) | 0;
  a = (a + ((b & c) | (~b & d)) + x8 + 0x698098d8) | 0;
  a = (((a << 7) | (a >>> 25)) + b) | 0;
  d = (d + ((a & b) | (~a & c)) + x9 + -0x74bb0851) | 0;
  d = (((d << 12) | (d >>> 20)) + a) | 0;
  c = (c + ((d & a) | (~d & b)) + x10 + -0xa44f) | 0;
  c = (((c << 17) | (c >>> 15)) + d) | 0;
  b = (b + ((c & d) | (~c & a)) + x11 + -0x76a32842) | 0;
  b = (((b << 22) | (b >>> 10)) + c) | 0;
  a = (a + ((b & c) | (~b & d)) + x12 + 0x6b901122) | 0;
  a = (((a << 7) | (a >>> 25)) + b) | 0;
  d = (d + ((a & b) | (~a & c)) + x13 + -0x2678e6d) | 0;
  d = (((d << 12) | (d >>> 20)) + a) | 0;
  c = (c + ((d & a) | (~d & b)) + x14 + -0x5986bc72) | 0;
  c = (((c << 17) | (c >>> 15)) + d) | 0;
  b = (b + ((c & d) | (~c & a)) + x15 + 0x49b40821) | 0;
  b = (((b << 22) | (b >>> 10)) + c) | 0;
  a = (a + ((b & d) | (c & ~d)) + x1 + -0x9e1da9e) | 0;
  a = (((a << 5) | (a >>> 27)) + b) | 0;
  d = (d + ((a & c) | (b & ~c)) + x6 + -0x3fbf4cc0) | 0;
  d = (((d << 9) | (d >>> 23)) + a) | 0;
  c = (c + ((d & b) | (a & ~b)) + x11 + 0x265e5a51) | 0;
  c = (((c << 14) | (c >>> 18)) + d) | 0;
  b = (b + ((c & a) | (d & ~a)) + x0 + -0x16493856) | 0;
  b = (((b << 20) | (b >>> 12)) + c) | 0;
  a = (a + ((b & d) | (c & ~d)) + x5 + -0x29d0efa3) | 0;
  a = (((a << 5) | (a >>> 27)) + b) | 0;
  d = (d + ((a & c) | (b & ~c)) + x10 + 0x2441453) | 0;
  d = (((d << 9) | (d >>> 23)) + a) | 0;
  c = (c + ((d & b) | (a & ~b)) + x15 + -0x275e197f) | 0;
  c = (((c << 14) | (c >>> 18)) + d) | 0;
  b = (b + ((c & a) | (d & ~a)) + x4 + -0x182c0438) | 0;
  b = (((b << 20) | (b >>> 12)) + c) | 0;
  a = (a + ((b & d) | (c & ~d)) + x9 + 0x21e1cde6) | 0;
  a = (((a << 5) | (a >>> 27)) + b) | 0;
  d = (d + ((a & c) | (b & ~c)) + x14 + -0x3cc8f82a) | 0;
  d = (((d << 9) | (d >>> 23)) + a) | 0;
  c = (c + ((d & b) | (a & ~b)) + x3 + -0xb2af279) | 0;
  c = (((c << 14) | (c >>> 18)) + d) | 0;
  b = (b + ((c & a) | (d & ~a)) + x8 + 0x455a14ed) | 0;
  b = (((b << 20) | (b >>> 12)) + c) | 0;
  a = (a + ((b & d) | (c & ~d)) + x13 + -0x561c16fb) | 0;
  a = (((a << 5) | (a >>> 27)) + b) | 0;
  d = (d + ((a & c) | (b & ~c)) + x2 + -0x3105c08) | 0;
  d = (((d << 9) | (d >>> 23)) + a) | 0;
  c = (c + ((d & b) | (a & ~b)) + x7 + 0x676f02d9) | 0;
  c = (((c << 14) | (c >>> 18)) + d) | 0;
  b = (b + ((c & a) | (d & ~a)) + x12 + -0x72d5b376) | 0;
  b = (((b << 20) | (b >>> 12)) + c) | 0;
  a = (a + (b ^ c ^ d) + x5 + -0x5c6be) | 0;
  a = (((a << 4) | (a >>> 28)) + b) | 0;
  d = (d + (a ^ b ^ c) + x8 + -0x788e097f) | 0;
  d = (((d << 11) | (d >>> 21)) + a) | 0;
  c = (c + (d ^ a ^ b) + x11 + 0x6d9d6122) | 0;
  c = (((c << 16) | (c >>> 16)) + d) | 0;
  b = (b + (c ^ d ^ a) + x14 + -0x21ac7f4) | 0;
  b = (((b << 23) | (b >>> 9)) + c) | 0;
  a = (a + (b ^ c ^ d) + x1 + -0x5b4115bc) | 0;
  a = (((a << 4) | (a >>> 28)) + b) | 0;
  d = (d + (a ^ b ^ c) + x4 + 0x4bdecfa9) | 0;
  d = (((d << 11) | (d >>> 21)) + a) | 0;
  c = (c + (d ^ a ^ b) + x7 + -0x944b4a0) | 0;
  c = (((c << 16) | (c >>> 16)) + d) | 0;
  b = (b + (c ^ d ^ a) + x10 + -0x41404390) | 0;
  b = (((b << 23) | (b >>> 9)) + c) | 0;
  a = (a + (b ^ c ^ d) + x13 + 0x289b7ec6) | 0;
  a = (((a << 4) | (a >>> 28)) + b) | 0;
  d = (d + (a ^ b ^ c) + x0 + -0x155ed806) | 0;
  d = (((d << 11) | (d >>> 21)) + a) | 0;
  c = (c + (d ^ a ^ b) + x3 + -0x2b10cf7b) | 0;
  c = (((c << 16) | (c >>> 16)) + d) | 0;
  b = (b + (c ^ d ^ a) + x6 + 0x4881d05) | 0;
  b = (((b << 23) | (b >>> 9)) + c) | 0;
  a = (a + (b ^ c ^ d) + x9 + -0x262b2fc7) | 0;
  a = (((a << 4) | (a >>> 28)) + b) | 0;
  d = (d + (a ^ b ^ c) + x12 + -0x1924661b) | 0;
  d = (((d << 11) | (d >>> 21)) + a) | 0;
  c = (c + (d ^ a ^ b) + x15 + 0x1fa27cf8) | 0;
  c = (((c << 16) | (c >>> 16)) + d) | 0;
  b = (b + (c ^ d ^ a) + x2 + -0x3b53a99b) | 0;
  b = (((b << 23) | (b >>> 9)) + c) | 0;
  a = (a + (c ^ (b | ~d)) + x0 + -0xbd6ddbc) | 0;
  a = (((a << 6) | (a >>> 26)) + b) | 0;
  d = (d + (b ^ (a | ~c)) + x7 + 0x432aff97) | 0;
  d = (((d << 10) | (d >>> 22)) + a) | 0;
  c = (c + (a ^ (d | ~b)) + x14 + -0x546bdc59) | 0;
  c = (((c << 15) | (c >>> 17)) + d) | 0;
  b = (b + (d ^ (c | ~a)) + x5 + -0x36c5fc7) | 0;
  b = (((b << 21) | (b >>> 11)) + c) | 0;
  a = (a + (c ^ (b | ~d)) + x12 + 0x655b59c3) | 0;
  a = (((a << 6) | (a >>> 26)) + b) | 0;
  d = (d + (b ^ (a | ~c)) + x3 + -0x70f3336e) | 0;
  d = (((d << 10) | (d >>> 22)) + a) | 0;
  c = (c + (a ^ (d | ~b)) + x10 + -0x100b83) | 0;
  c = (((c << 15) | (c >>> 17)) + d) | 0;
  b = (b + (d ^ (c | ~a)) + x1 + -0x7a7ba22f) | 0;
  b = (((b << 21) | (b >>> 11)) + c) | 0;
  a = (a + (c ^ (b | ~d)) + x8 + 0x6fa87e4f) | 0;
  a = (((a << 6) | (a >>> 26)) + b) | 0;
  d = (d + (b ^ (a | ~c)) + x15 + -0x1d31920) | 0;
  d = (((d << 10) | (d >>> 22)) + a) | 0;
  c = (c + (a ^ (d | ~b)) + x6 + -0x5cfebcec) | 0;
  c = (((c << 15) | (c >>> 17)) + d) | 0;
  b = (b + (d ^ (c | ~a)) + x13 + 0x4e0811a1) | 0;
  b = (((b << 21) | (b >>> 11)) + c) | 0;
  a = (a + (c ^ (b | ~d)) + x4 + -0x8ac817e) | 0;
  a = (((a << 6) | (a >>> 26)) + b) | 0;
  d = (d + (b ^ (a | ~c)) + x11 + -0x42c50dcb) | 0;
  d = (((d << 10) | (d >>> 22)) + a) | 0;
  c = (c + (a ^ (d | ~b)) + x2 + 0x2ad7d2bb) | 0;
  c = (((c << 15) | (c >>> 17)) + d) | 0;
  b = (b + (d ^ (c | ~a)) + x9 + -0x14792c6f) | 0;
  b = (((b << 21) | (b >>> 11)) + c) | 0;

  st[0] = (st[0]! + a) | 0;
  st[1] = (st[1]! + b) | 0;
  st[2] = (st[2]! + c) | 0;
  st[3] = (st[3]! + d) | 0;
}

function md5LoadBlock(src: Uint8Array, at: number, x: Int32Array): void {
  for (let w = 0; w < 16; w++, at += 4) {
    x[w] = src[at]! | (src[at + 1]! << 8) | (src[at + 2]! << 16) | (src[at + 3]! << 24);
  }
}

/**
 * carbon_ch position: the first two bytes of MD5(bytes[start, end)) as a big-endian
 * 16-bit number, i.e. `int(md5(key).hexdigest()[:4], 16)` (carbon) and
 * `(md5[0] << 8) + md5[1]` (carbon-c-relay). A pure-JS MD5 (RFC 1321) so that the
 * hot path neither allocates nor crosses into C++; `md5Pos16Native` is the
 * node:crypto equivalent used to cross-check it.
 */
export function md5Pos16(bytes: Uint8Array, start: number, end: number): number {
  const st = md5State;
  st[0] = 0x67452301;
  st[1] = 0xefcdab89 | 0;
  st[2] = 0x98badcfe | 0;
  st[3] = 0x10325476;
  const len = end - start;
  let at = start;
  const fullEnd = start + (len & ~63);
  while (at < fullEnd) {
    md5LoadBlock(bytes, at, md5Block);
    md5Compress(md5Block, st);
    at += 64;
  }
  // The last 1 or 2 blocks, built in place: remaining bytes, 0x80, zeros, bit length (LE 64).
  const x = md5Block;
  const rest = end - at;
  let w = 0;
  for (; w * 4 + 4 <= rest; w++, at += 4) {
    x[w] = bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24);
  }
  let word = 0;
  let shift = 0;
  for (; at < end; at++, shift += 8) word |= bytes[at]! << shift;
  x[w++] = word | (0x80 << shift);
  if (w > 14) {
    if (w === 15) x[15] = 0;
    md5Compress(x, st);
    w = 0;
  }
  while (w < 14) x[w++] = 0;
  x[14] = (len * 8) | 0;
  x[15] = Math.floor(len / 0x20000000) | 0;
  md5Compress(x, st);
  const a = st[0]!;
  return ((a & 0xff) << 8) | ((a >>> 8) & 0xff);
}

/** md5Pos16 through node:crypto's one-shot `hash()` (allocates a Buffer per call). */
export function md5Pos16Native(bytes: Uint8Array, start: number, end: number): number {
  const digest = hash("md5", bytes.subarray(start, end), "buffer");
  return (digest[0]! << 8) | digest[1]!;
}

const FNV32_OFFSET = 0x811c9dc5;
const FNV32_PRIME = 0x01000193;

/** 32-bit FNV-1a (bytes as unsigned 0..255), as carbon's `fnv32a`. Unsigned result. */
export function fnv1a32(bytes: Uint8Array, start: number, end: number): number {
  let h = FNV32_OFFSET | 0;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, FNV32_PRIME);
  return h >>> 0;
}

/**
 * 32-bit FNV-1a as carbon-c-relay 3.7.3 computes it on amd64: `hash ^ (unsigned int)*p`
 * with `p` a (signed) `char *`, so a byte >= 0x80 is sign-extended to 0xFFFFFFxx
 * before the XOR (spec §6.1). Identical to `fnv1a32` for ASCII.
 */
export function fnv1a32Signed(bytes: Uint8Array, start: number, end: number): number {
  let h = FNV32_OFFSET | 0;
  for (let i = start; i < end; i++) h = Math.imul(h ^ ((bytes[i]! << 24) >> 24), FNV32_PRIME);
  return h >>> 0;
}

/** Folds a 32-bit FNV value to the 16-bit ring space: `(h >> 16) ^ (h & 0xFFFF)`. */
export function fold16(h: number): number {
  return ((h >>> 16) ^ (h & 0xffff)) >>> 0;
}

/** fnv1a_ch position as carbon computes it (0..65535). */
export function fnv1aPos16(bytes: Uint8Array, start: number, end: number): number {
  const h = fnv1a32(bytes, start, end);
  return (h >>> 16) ^ (h & 0xffff);
}

/** fnv1a_ch position as carbon-c-relay computes it (0..65535), sign-extended bytes. */
export function fnv1aPos16Signed(bytes: Uint8Array, start: number, end: number): number {
  const h = fnv1a32Signed(bytes, start, end);
  return (h >>> 16) ^ (h & 0xffff);
}

/**
 * MurmurHash3 x86_32 with seed 0, as a *signed* int32: what `mmh3.hash(key)` returns
 * (carbon's mmh3_ch uses it unreduced, spec §5.1).
 */
export function murmur3x86_32(bytes: Uint8Array, start: number, end: number, seed = 0): number {
  const c1 = 0xcc9e2d51 | 0;
  const c2 = 0x1b873593;
  let h = seed | 0;
  const len = end - start;
  const blocksEnd = start + (len & ~3);
  let i = start;
  for (; i < blocksEnd; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = len & 3;
  if (rest !== 0) {
    let k = bytes[i]!;
    if (rest > 1) k ^= bytes[i + 1]! << 8;
    if (rest > 2) k ^= bytes[i + 2]! << 16;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b | 0);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35 | 0);
  h ^= h >>> 16;
  return h | 0;
}

/**
 * 64-bit arithmetic for the jump hash, on (hi, lo) pairs of unsigned 32-bit halves so
 * the hot path needs no BigInt. Results go to `u64` ([0] = hi, [1] = lo).
 */
export const u64 = new Uint32Array(2);

/** Low 64 bits of (aHi:aLo) * (bHi:bLo), into u64. */
function mul64(aHi: number, aLo: number, bHi: number, bLo: number): void {
  const a0 = aLo & 0xffff;
  const a1 = aLo >>> 16;
  const b0 = bLo & 0xffff;
  const b1 = bLo >>> 16;
  const mid = a0 * b1 + a1 * b0; // < 2^33, exact
  const lo = a0 * b0 + (mid % 0x10000) * 0x10000; // < 2^33, exact
  const carry = Math.floor(lo / 0x100000000);
  const hi =
    a1 * b1 + Math.floor(mid / 0x10000) + carry + Math.imul(aHi, bLo) + Math.imul(aLo, bHi);
  u64[0] = hi >>> 0;
  u64[1] = lo >>> 0;
}

/**
 * 64-bit FNV-1a over sign-extended bytes (carbon-c-relay's `fnv1a_64` on amd64), into
 * u64. Offset basis 0xCBF29CE484222325, prime 0x100000001B3 = 2^40 + 0x1B3, so the
 * multiply is `h * 0x1B3 + (h << 40)`.
 */
export function fnv1a64Signed(bytes: Uint8Array, start: number, end: number): void {
  let hi = 0xcbf29ce4 | 0;
  let lo = 0x84222325 | 0;
  for (let i = start; i < end; i++) {
    const b = (bytes[i]! << 24) >> 24; // sign-extend, as (unsigned long long)(char)
    lo ^= b;
    hi ^= b >> 31; // all ones for a negative byte
    // h * 0x1B3 in 16-bit halves (every partial product fits an int32), plus h << 40.
    const t0 = (lo & 0xffff) * 0x1b3;
    const t1 = (lo >>> 16) * 0x1b3 + (t0 >>> 16);
    hi = (Math.imul(hi, 0x1b3) + (t1 >>> 16) + (lo << 8)) | 0;
    lo = (t1 << 16) | (t0 & 0xffff);
  }
  u64[0] = hi;
  u64[1] = lo;
}

const JUMP_MUL_HI = 0x27bb2ee6; // 2862933555777941757
const JUMP_MUL_LO = 0x87b0b0fd;
const XS_MUL_HI = 0x2545f491; // 2685821657736338717
const XS_MUL_LO = 0x4f6cdd1d;

/**
 * Lamping–Veach jump consistent hash as carbon-c-relay's `jump_bucketpos`: bucket in
 * [0, buckets) for the 64-bit key (hi, lo). The double expression is evaluated exactly
 * as the C code does (IEEE doubles both sides).
 */
export function jumpBucket(hi: number, lo: number, buckets: number): number {
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    mul64(hi, lo, JUMP_MUL_HI, JUMP_MUL_LO);
    // + 1 (mod 2^64)
    lo = (u64[1]! + 1) >>> 0;
    hi = lo === 0 ? (u64[0]! + 1) >>> 0 : u64[0]!;
    j = Math.trunc((b + 1) * (2147483648 / ((hi >>> 1) + 1)));
  }
  return b;
}

/**
 * carbon-c-relay's re-hash between jump replicas (into u64):
 * `h ^= h >> 12; h ^= h << 25; h ^= h >> 27; h *= 2685821657736338717`.
 */
export function jumpRemix(hi: number, lo: number): void {
  lo = (lo ^ ((lo >>> 12) | (hi << 20))) >>> 0;
  hi = (hi ^ (hi >>> 12)) >>> 0;
  hi = (hi ^ ((hi << 25) | (lo >>> 7))) >>> 0;
  lo = (lo ^ (lo << 25)) >>> 0;
  lo = (lo ^ ((lo >>> 27) | (hi << 5))) >>> 0;
  hi = (hi ^ (hi >>> 27)) >>> 0;
  mul64(hi, lo, XS_MUL_HI, XS_MUL_LO);
}
