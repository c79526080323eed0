// Drivers of the NHWC float32 conv kernels (nn_nhwc.h): weight packing, the impl's build of
// the bodies (an impl this host cannot run is an error naming the missing feature) and the
// split of output rows across threads (disjoint rows per task, so results never depend on
// the thread count). This file is also the portable (Impl::Ref) build of the bodies.
#include "fastq/nn_nhwc.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "fastq/cpu_features.h"
#include "fastq/nn_f32.h"
#include "fastq/nn_nhwc_body.h"

namespace fastq {
namespace nn {

NhwcKernels nhwc_kernels_ref() { return make_nhwc_kernels(); }

namespace {

NhwcKernels kernels_for(Impl impl) {
  const std::string missing = impl_missing_feature(impl);
  if (!missing.empty())
    throw std::invalid_argument(std::string("impl '") + impl_name(impl) +
                                "' cannot run on this CPU: missing " + missing);
  switch (impl) {
    case Impl::Ref: return nhwc_kernels_ref();
#if defined(FASTQ_HAVE_X86)
    case Impl::Avx2: return nhwc_kernels_avx2();
    case Impl::Avx512Vnni: return nhwc_kernels_avx512();
#endif
    default:
      throw std::invalid_argument(std::string("impl '") + impl_name(impl) + "' is not built");
  }
}

void check_geom(const NhwcGeom& g) {
  if (g.N < 0 || g.H < 1 || g.W < 1 || g.C < 1 || g.OH < 1 || g.OW < 1 || g.KH < 1 ||
      g.KW < 1 || g.SH < 1 || g.SW < 1 || g.DH < 1 || g.DW < 1 || g.PH < 0 || g.PW < 0)
    throw std::invalid_argument("bad NHWC conv geometry");
}

void run_gemm(const float* x, bool im2col, const NhwcGeom& g, const float* packed,
              int64_t M, float lo, float hi, float* y, Impl impl) {
  check_geom(g);
  const NhwcKernels k = kernels_for(impl);
  const int64_t rows = g.N * g.OH * g.OW;
  const int64_t K = im2col ? g.KH * g.KW * g.C : g.C;
  // tiles of kMR rows per task; the tile height is a multiple of every build's kMR (12)
  const int64_t tile = 12;
  const int64_t tiles = (rows + tile - 1) / tile;
  parallel_chunks(tiles, min_items(tile * K * M / 8), [&](int64_t t0, int64_t t1) {
    k.gemm_rows(x, im2col, g, packed, M, lo, hi, y, t0 * tile,
                std::min(rows, t1 * tile));
  });
}

}  // namespace

int64_t nhwc_panel_width(Impl impl) {
  return impl == Impl::Ref ? nhwc_kernels_ref().nr : kernels_for(impl).nr;
}

void nhwc_pack_gemm(const float* w, const float* bias, int64_t K, int64_t M, int64_t nr,
                    float* packed) {
  const int64_t np = (M + nr - 1) / nr;
  for (int64_t p = 0; p < np; ++p) {
    float* d = packed + p * (K + 1) * nr;
    const int64_t c0 = p * nr, nc = std::min(nr, M - c0);
    for (int64_t k = 0; k <= K; ++k, d += nr) {
      const float* s = k < K ? w + k * M + c0 : bias ? bias + c0 : nullptr;
      for (int64_t j = 0; j < nr; ++j) d[j] = (s && j < nc) ? s[j] : 0.0f;
    }
  }
}

void conv1x1_nhwc(const float* x, const NhwcGeom& g, const float* packed, int64_t M, float lo,
                  float hi, float* y, Impl impl) {
  run_gemm(x, false, g, packed, M, lo, hi, y, impl);
}

void conv_nhwc(const float* x, bool x_nchw, const NhwcGeom& g, const float* packed, int64_t M,
               float lo, float hi, float* y, Impl impl) {
  if (!x_nchw || g.C == 1) {  // one channel: NCHW and NHWC are the same memory
    run_gemm(x, true, g, packed, M, lo, hi, y, impl);
    return;
  }
  // NCHW input (a model input, typically 3 channels): one transpose to NHWC first, so the
  // column rows are built from contiguous channel runs instead of plane-strided loads
  check_geom(g);
  const int64_t hw = g.H * g.W;
  std::unique_ptr<float[]> xt(new float[static_cast<size_t>(g.N * hw * g.C)]);  // no zero fill
  parallel_chunks(g.N * g.H, min_items(g.W * g.C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / g.H, h = r % g.H;
      const float* s = x + n * g.C * hw + h * g.W;
      float* d = xt.get() + r * g.W * g.C;
      for (int64_t c = 0; c < g.C; ++c)  // one sequential read stream per channel plane
        for (int64_t w = 0; w < g.W; ++w) d[w * g.C + c] = s[c * hw + w];
    }
  });
  run_gemm(xt.get(), true, g, packed, M, lo, hi, y, impl);
}

void depthwise_nhwc(const float* x, const NhwcGeom& g, const float* w, const float* bias,
                    float lo, float hi, float* y, Impl impl) {
  check_geom(g);
  if (g.KH > 64 || g.KW > 64)
    throw std::invalid_argument("NHWC depthwise conv supports kernels up to 64 taps per axis");
  const NhwcKernels k = kernels_for(impl);
  const int64_t rows = g.N * g.OH;
  parallel_chunks(rows, min_items(g.OW * g.C * g.KH * g.KW), [&](int64_t r0, int64_t r1) {
    k.dw_rows(x, g, w, bias, lo, hi, y, r0, r1);
  });
}

}  // namespace nn
}  // namespace fastq
