// Max / average / Lp pooling over N-D (canonical 3-D) windows. Without Indices: the
// separable body in nn_body.h (portable, AVX2 or AVX-512 build). With Indices: a direct walk
// where each output visits only the taps inside the input and keeps the first maximum in
// (kd, kh, kw) order (what ONNX Runtime reports). Average divides by the taps inside the
// input, or inside the padded input with count_include_pad (taps a ceil_mode window hangs
// past the end pads never count).
#include "fastq/nn_body.h"
#include "fastq/nn_f32.h"

namespace fastq {
namespace nn {

template <typename T>
void pool3(const T* x, int64_t planes, const Geom3& g, const PoolArgs& a, T* y, int64_t* idx,
           Impl impl) {
  const AxisTaps td = axis_taps(g, a.pad_end, 0), th = axis_taps(g, a.pad_end, 1);
  const AxisTaps tw = axis_taps(g, a.pad_end, 2);
  const int64_t D = g.in[0], H = g.in[1], W = g.in[2], V = g.in_vol(), P = g.out_vol();
  if (!idx) {
    parallel_chunks(planes, min_items(V + P), [&](int64_t p0, int64_t p1) {
#if defined(FASTQ_HAVE_X86)
      if (impl == Impl::Avx512Vnni) return pool_planes_avx512(x, p0, p1, g, a, td, th, tw, y);
      if (impl == Impl::Avx2) return pool_planes_avx2(x, p0, p1, g, a, td, th, tw, y);
#endif
      (void)impl;
      pool_body(x, p0, p1, g, a, td, th, tw, y);
    });
    return;
  }
  // With Indices (max only, checked by the binding): a direct per-window walk keeping the
  // first maximum in (kd, kh, kw) order.
  parallel_chunks(planes, min_items(V + P), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const T* src = x + p * V;
      T* dst = y + p * P;
      int64_t* idst = idx + p * P;
      int64_t o = 0;
      for (int64_t od = 0; od < g.out[0]; ++od) {
        const int64_t d0 = od * g.stride[0] - g.pad[0];
        for (int64_t oh = 0; oh < g.out[1]; ++oh) {
          const int64_t h0 = oh * g.stride[1] - g.pad[1];
          for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o) {
            const int64_t w0 = ow * g.stride[2] - g.pad[2];
            T best = max_identity<T>();  // an all-padding window: -inf, index -1
            int64_t bi = -1;
            for (int64_t kd = td.lo[od]; kd < td.hi[od]; ++kd) {
              const int64_t id = d0 + kd * g.dil[0];
              for (int64_t kh = th.lo[oh]; kh < th.hi[oh]; ++kh) {
                const int64_t ih = h0 + kh * g.dil[1];
                const T* row = src + (id * H + ih) * W;
                for (int64_t kw = tw.lo[ow]; kw < tw.hi[ow]; ++kw) {
                  const int64_t iw = w0 + kw * g.dil[2];
                  if (bi < 0 || row[iw] > best) {
                    best = row[iw];
                    bi = a.col_major ? id + ih * D + iw * D * H : (id * H + ih) * W + iw;
                  }
                }
              }
            }
            dst[o] = best;
            idst[o] = bi < 0 ? -1 : p * V + bi;
          }
        }
      }
    }
  });
}

template void pool3<float>(const float*, int64_t, const Geom3&, const PoolArgs&, float*,
                           int64_t*, Impl);
template void pool3<double>(const double*, int64_t, const Geom3&, const PoolArgs&, double*,
                            int64_t*, Impl);
template void pool3<int8_t>(const int8_t*, int64_t, const Geom3&, const PoolArgs&, int8_t*,
                            int64_t*, Impl);
template void pool3<uint8_t>(const uint8_t*, int64_t, const Geom3&, const PoolArgs&,
                             uint8_t*, int64_t*, Impl);

}  // namespace nn
}  // namespace fastq
