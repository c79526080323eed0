// AVX-512 NHWC depthwise int8 rows (conv_dw.h): 32 channels per block; a tap pair is one
// vpdpwssd per 16 channels of u8 widened to s16 (exact pair sums; flat sat16pair: vpmaddwd,
// clamp to s16, add, as conv_dw_nhwc_row_ref). With a DwRequant the requantization of
// requant.h is done in the store from the registers. Integer sums and the same IEEE steps as
// the portable loops: the same bits. Lane order: see lane_channel in conv_nhwc.cpp.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fastq/conv_dw.h"
#include "fastq/unroll.h"

namespace fastq {

namespace {

inline __mmask32 mask32(int64_t rem) {
  return rem >= 32 ? __mmask32(0xFFFFFFFFu) : __mmask32((1u << rem) - 1);
}

struct Block {
  __m512i lo, hi;
};

// One block of one output pixel: taps[0 .. 2P) (the last of an odd count reads zero weights).
template <int P>
inline __attribute__((always_inline)) Block pixel(
    const uint8_t* const* taps, int64_t off, __mmask32 m, const __m512i* wl, const __m512i* wh,
    const int16_t* wq, int64_t wstride, int64_t np, bool flat_sat, __m512i sl, __m512i sh) {
  const __m512i lo16 = _mm512_set1_epi32(-32768), hi16 = _mm512_set1_epi32(32767);
  const int64_t n = P ? P : np;
  for (int64_t q = 0; q < n; ++q) {
    const __m512i x0 = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, taps[2 * q] + off));
    const __m512i x1 = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, taps[2 * q + 1] + off));
    __m512i a, b;
    if (P) {
      a = wl[q];
      b = wh[q];
    } else {
      a = _mm512_loadu_si512(wq + q * wstride);
      b = _mm512_loadu_si512(wq + q * wstride + 32);
    }
    const __m512i ul = _mm512_unpacklo_epi16(x0, x1), uh = _mm512_unpackhi_epi16(x0, x1);
    if (flat_sat) {
      const __m512i pl = _mm512_madd_epi16(ul, a), ph = _mm512_madd_epi16(uh, b);
      sl = _mm512_add_epi32(sl, _mm512_min_epi32(hi16, _mm512_max_epi32(lo16, pl)));
      sh = _mm512_add_epi32(sh, _mm512_min_epi32(hi16, _mm512_max_epi32(lo16, ph)));
    } else {  // vpdpwssd: the same pair sums added in one instruction (wrapping, as add)
      sl = _mm512_dpwssd_epi32(sl, ul, a);
      sh = _mm512_dpwssd_epi32(sh, uh, b);
    }
  }
  return Block{sl, sh};
}

// acc already holds acc - z (the accumulators start at -z32, wrapping like the subtraction);
// the clamped |v| <= 255, where vcvtps2dq's round half to even (the default MXCSR mode) is
// the 1.5 * 2^23 trick of requant.cpp
inline __attribute__((always_inline)) __m512i requant16(__m512i acc, __m512 mu, __m512 vl,
                                                        __m512 vh, __m512i vz) {
  __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), mu);
  v = _mm512_min_ps(vh, _mm512_max_ps(vl, v));
  return _mm512_add_epi32(_mm512_cvtps_epi32(v), vz);
}

// What both row bodies' stores need: the permutations that put the two accumulator vectors'
// lanes back in channel order, and the requantization's clamp bounds (relative to the zero
// point) and zero point (all zero without requantization).
struct StoreConsts {
  __m512i perm0, perm1, vz;
  __m512 vl, vh;
  explicit StoreConsts(const DwRequant* rq) {
    alignas(64) int32_t i0[16], i1[16];
    for (int64_t c = 0; c < 16; ++c) {
      const int64_t k = c / 8, j = c % 8, k1 = (c + 16) / 8;
      i0[c] = int32_t(j < 4 ? 4 * k + j : 16 + 4 * k + j - 4);
      i1[c] = int32_t(j < 4 ? 4 * k1 + j : 16 + 4 * k1 + j - 4);
    }
    perm0 = _mm512_load_si512(i0);
    perm1 = _mm512_load_si512(i1);
    vl = _mm512_setzero_ps();
    vh = vl;
    vz = _mm512_setzero_si512();
    if (rq) {
      const int32_t zq = rq->y_zp;
      vl = _mm512_set1_ps(rq->y_signed ? float(-128 - zq) : float(0 - zq));
      vh = _mm512_set1_ps(rq->y_signed ? float(127 - zq) : float(255 - zq));
      vz = _mm512_set1_epi32(zq);
    }
  }
};

// A 32-channel block's starting accumulators (minus the zero-point correction) and
// requantization multipliers (zero without requantization).
inline __attribute__((always_inline)) void block_start(const DwRequant* rq, int64_t off,
                                                       __m512i& il, __m512i& ih, __m512& ml,
                                                       __m512& mh) {
  const __m512i zero = _mm512_setzero_si512();
  il = ih = zero;
  ml = mh = _mm512_setzero_ps();
  if (rq) {
    il = _mm512_sub_epi32(zero, _mm512_loadu_si512(rq->z32 + off));
    ih = _mm512_sub_epi32(zero, _mm512_loadu_si512(rq->z32 + off + 16));
    ml = _mm512_loadu_ps(rq->mult + off);
    mh = _mm512_loadu_ps(rq->mult + off + 16);
  }
}

// One pixel's 32-channel block: requantized bytes (mask m) into out8, or the raw sums in
// channel order into o (rem channels left from this block on).
inline __attribute__((always_inline)) void store_pixel(const StoreConsts& sc,
                                                       const DwRequant* rq, __m512i lo,
                                                       __m512i hi, __m512 ml, __m512 mh,
                                                       uint8_t* out8, __mmask32 m, int32_t* o,
                                                       int64_t rem) {
  if (rq) {
    const __m512i yl = requant16(lo, ml, sc.vl, sc.vh, sc.vz);
    const __m512i yh = requant16(hi, mh, sc.vl, sc.vh, sc.vz);
    // in range already: the s16 pack and the byte truncation change nothing
    const __m256i y8 = _mm512_cvtepi16_epi8(_mm512_packs_epi32(yl, yh));
    _mm256_mask_storeu_epi8(out8, m, y8);
  } else {
    const __mmask16 m0 = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
    const __mmask16 m1 = rem >= 32 ? __mmask16(0xFFFF)
                         : rem > 16 ? __mmask16((1u << (rem - 16)) - 1) : __mmask16(0);
    _mm512_mask_storeu_epi32(o, m0, _mm512_permutex2var_epi32(lo, sc.perm0, hi));
    _mm512_mask_storeu_epi32(o + 16, m1, _mm512_permutex2var_epi32(lo, sc.perm1, hi));
  }
}

template <int P>
void row_body(const DwNhwcArgs& a, const int16_t* wp, const uint8_t* const* ptr, int64_t OW,
              int32_t* acc, const DwRequant* rq, uint8_t* out) {
  const int64_t C = a.s.C, T = a.s.KH * a.s.KW, np = (T + 1) / 2, CB = (C + 31) / 32;
  const int64_t wstride = CB * 64, tp = 2 * np;  // int16 per pair; pointers per pixel
  // raw sums: lanes back to channel order
  const StoreConsts sc(rq);
  __m512i wl[P ? P : 1], wh[P ? P : 1];
  const int64_t ldo = rq ? rq->ldo : 0;
  for (int64_t b = 0; b < CB; ++b) {
    const int64_t off = b * 32;
    const __mmask32 m = mask32(C - off);
    const int16_t* wq = wp + b * 64;
    if (P)
      for (int q = 0; q < P; ++q) {
        wl[q] = _mm512_loadu_si512(wq + q * wstride);
        wh[q] = _mm512_loadu_si512(wq + q * wstride + 32);
      }
    __m512i il, ih;
    __m512 ml, mh;
    block_start(rq, off, il, ih, ml, mh);
    uint8_t* ob = out + off;
    for (int64_t ow = 0; ow < OW; ++ow) {
      const Block s = pixel<P>(ptr + ow * tp, off, m, wl, wh, wq, wstride, np, a.flat_sat, il, ih);
      store_pixel(sc, rq, s.lo, s.hi, ml, mh, ob + ow * ldo, m, acc + ow * C + off, C - off);
    }
  }
}

// 3x3, dilation 1 across, no pair saturation (exact sums, so any pairing gives the same
// bits): rows 0 and 1 of a tap column are one vertical pair, row 2 pairs with a zero; each
// input column is widened and interleaved once into `cols` and read by every output pixel
// whose window covers it (3 at stride 1) instead of once per tap per pixel.
void row_3x3_cols(const DwNhwcArgs& a, const int16_t* wv, const uint8_t* const* trow,
                  int64_t OW, int32_t* acc, const DwRequant* rq, uint8_t* out) {
  const ConvShape& s = a.s;
  const int64_t C = s.C, CB = (C + 31) / 32, sw = s.stride_w, W = s.W;
  const int64_t iw0 = -s.pad_left, ncol = (OW - 1) * sw + 3;
  // 64-byte aligned column vectors (a std::vector<__m512i> drops the alignment attribute)
  thread_local std::vector<uint8_t> raw;
  raw.resize(static_cast<size_t>(ncol * 4 * 64 + 64));
  __m512i* const cbase = reinterpret_cast<__m512i*>(
      (reinterpret_cast<uintptr_t>(raw.data()) + 63) & ~uintptr_t(63));
  const StoreConsts sc(rq);
  const int64_t ldo = rq ? rq->ldo : 0;
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t b = 0; b < CB; ++b) {
    const int64_t off = b * 32;
    const __mmask32 m = mask32(C - off);
    __m512i* cv = cbase;
    for (int64_t j = 0; j < ncol; ++j, cv += 4) {
      const int64_t iw = iw0 + j;
      const bool in = iw >= 0 && iw < W;
      const uint8_t* p0 = in && trow[0] ? trow[0] + iw * C + off : a.zrow + off;
      const uint8_t* p1 = in && trow[1] ? trow[1] + iw * C + off : a.zrow + off;
      const uint8_t* p2 = in && trow[2] ? trow[2] + iw * C + off : a.zrow + off;
      const __m512i x0 = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, p0));
      const __m512i x1 = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, p1));
      const __m512i x2 = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(m, p2));
      cv[0] = _mm512_unpacklo_epi16(x0, x1);
      cv[1] = _mm512_unpackhi_epi16(x0, x1);
      cv[2] = _mm512_unpacklo_epi16(x2, zero);
      cv[3] = _mm512_unpackhi_epi16(x2, zero);
    }
    const int16_t* wb = wv + b * 384;  // [kw][01 lo, 01 hi, 2 lo, 2 hi][32]
    __m512i w[12];
    unroll<12>([&](auto i) __attribute__((always_inline)) {
      w[i] = _mm512_loadu_si512(wb + i * 32);
    });
    __m512i il, ih;
    __m512 ml, mh;
    block_start(rq, off, il, ih, ml, mh);
    uint8_t* ob = out + off;
    for (int64_t ow = 0; ow < OW; ++ow) {
      const __m512i* c0 = cbase + ow * sw * 4;
      __m512i sl = il, sh = ih;
      unroll<3>([&](auto kw) __attribute__((always_inline)) {
        sl = _mm512_dpwssd_epi32(sl, c0[kw * 4 + 0], w[kw * 4 + 0]);
        sh = _mm512_dpwssd_epi32(sh, c0[kw * 4 + 1], w[kw * 4 + 1]);
        sl = _mm512_dpwssd_epi32(sl, c0[kw * 4 + 2], w[kw * 4 + 2]);
        sh = _mm512_dpwssd_epi32(sh, c0[kw * 4 + 3], w[kw * 4 + 3]);
      });
      store_pixel(sc, rq, sl, sh, ml, mh, ob + ow * ldo, m, acc + ow * C + off, C - off);
    }
  }
}

}  // namespace

void conv_dw_nhwc_row_avx512(const DwNhwcArgs& a, const int16_t* wp, const int16_t* wv,
                             int64_t n, int64_t oh, int32_t* acc, const DwRequant* rq,
                             uint8_t* out) {
  const ConvShape& s = a.s;
  const int64_t OW = s.OW(), T = s.KH * s.KW, C = s.C, tp = 2 * ((T + 1) / 2);
  if (wv && !a.flat_sat && s.KH == 3 && s.KW == 3 && s.dil_w == 1) {
    const uint8_t* rows[3];
    for (int64_t r = 0; r < 3; ++r) {
      const int64_t ih = oh * s.stride_h - s.pad_top + r * s.dil_h;
      rows[r] = ih >= 0 && ih < s.H ? a.x + (n * s.H + ih) * s.W * C : nullptr;
    }
    row_3x3_cols(a, wv, rows, OW, acc, rq, out);
    return;
  }
  thread_local std::vector<const uint8_t*> ptr;
  ptr.resize(static_cast<size_t>(OW * tp));
  thread_local std::vector<const uint8_t*> trow;
  thread_local std::vector<int64_t> tcol;
  thread_local std::vector<intptr_t> tbase, tstep;
  trow.resize(static_cast<size_t>(T));
  tcol.resize(static_cast<size_t>(T));
  tbase.resize(static_cast<size_t>(T));
  tstep.resize(static_cast<size_t>(T));
  dw_nhwc_tap_rows(a, n, oh, trow.data(), tcol.data());
  for (int64_t t = 0; t < T; ++t) {
    // interior pixels: tap address = tbase + ow * tstep (a padding row: zrow, step 0)
    tbase[t] = trow[t] ? reinterpret_cast<intptr_t>(trow[t]) + tcol[t] * C
                       : reinterpret_cast<intptr_t>(a.zrow);
    tstep[t] = trow[t] ? s.stride_w * C : 0;
  }
  const int64_t span_w = (s.KW - 1) * s.dil_w;
  const intptr_t* tb = tbase.data();
  const intptr_t* ts = tstep.data();
  for (int64_t ow = 0; ow < OW; ++ow) {
    const uint8_t** p = ptr.data() + ow * tp;
    const int64_t iw0 = ow * s.stride_w;
    if (iw0 - s.pad_left >= 0 && iw0 - s.pad_left + span_w < s.W) {  // every column inside
      for (int64_t t = 0; t < T; ++t) p[t] = reinterpret_cast<const uint8_t*>(tb[t] + ow * ts[t]);
    } else {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t iw = iw0 + tcol[t];
        p[t] = trow[t] && iw >= 0 && iw < s.W ? trow[t] + iw * C : a.zrow;
      }
    }
    if (T % 2) p[T] = a.zrow;  // paired with zero weights
  }
  if (T == 9)
    row_body<5>(a, wp, ptr.data(), OW, acc, rq, out);
  else
    row_body<0>(a, wp, ptr.data(), OW, acc, rq, out);
}

}  // namespace fastq
