// Scalar reference int8 convolution: the specification of conv.h, in plain loops over the
// original W[OC, C/group, KH, KW] layout. For each output it lists the products in the
// reduction order (kh, kw, c), c innermost, then sums them as the Arith says:
//   exact32: plain s32 sum.
//   sat16pair, PerTap: within each tap, channel pairs (0,1), (2,3), ...; an odd channel count
//     pairs the last channel with a zero; each pair sum saturates to s16.
//   sat16pair, Flat: pairs over the flat product list; an odd total pairs the last with zero.
// Spatial positions outside the input read x_zp.
#include <algorithm>
#include <vector>

#include "fastq/conv.h"

namespace fastq {

namespace {
inline int32_t sat16(int32_t v) { return std::min(32767, std::max(-32768, v)); }

int32_t reduce(const std::vector<int32_t>& p, int64_t per_tap, Arith arith, Pairing pairing) {
  int32_t acc = 0;
  if (arith == Arith::Exact32) {
    for (int32_t v : p) acc += v;
    return acc;
  }
  const int64_t n = static_cast<int64_t>(p.size());
  const int64_t run = pairing == Pairing::PerTap ? per_tap : n;  // pairs never cross a run
  for (int64_t start = 0; start < n; start += run) {
    for (int64_t i = start; i < start + run; i += 2) {
      int32_t pair = p[i];
      if (i + 1 < start + run) pair += p[i + 1];
      acc += sat16(pair);
    }
  }
  return acc;
}
}  // namespace

void conv_u8s8_ref(const uint8_t* x, const ConvShape& s, const int8_t* w, Pairing pairing,
                   uint8_t x_zp, int32_t* out, Arith arith) {
  const int64_t OH = s.OH(), OW = s.OW(), Cg = s.Cg(), OCg = s.OCg();
  std::vector<int32_t> prods;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc) {
      const int64_t g = oc / OCg;
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          prods.clear();
          for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
              const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
              const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
              for (int64_t c = 0; c < Cg; ++c) {
                const int64_t ic = g * Cg + c;
                const int32_t xv = inside ? x[((n * s.C + ic) * s.H + ih) * s.W + iw] : x_zp;
                const int32_t wv = w[((oc * Cg + c) * s.KH + kh) * s.KW + kw];
                prods.push_back(xv * wv);
              }
            }
          out[((n * s.OC + oc) * OH + oh) * OW + ow] = reduce(prods, Cg, arith, pairing);
        }
    }
}

}  // namespace fastq
