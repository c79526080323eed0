// im2col / col2im and the depthwise convolution driver (see nn_f32.h for the contracts).
// Conv = im2col + BLAS GEMM per group in Python; depthwise conv has K = kernel volume only,
// far too short a reduction for GEMM to pay off, so it runs directly (nn_body.h), on
// planes split across threads, in the portable, AVX2 or AVX-512 build of the same body.
#include <algorithm>
#include <cstring>

#include "fastq/nn_body.h"
#include "fastq/nn_f32.h"

namespace fastq {
namespace nn {

template <typename T>
void im2col3(const T* x, int64_t C, const Geom3& g, T* col) {
  const int64_t K = g.k_vol(), P = g.out_vol(), V = g.in_vol();
  const int64_t oD = g.out[0], oH = g.out[1], oW = g.out[2];
  parallel_chunks(C * K, min_items(P), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t c = r / K, kk = r % K;
      const int64_t kd = kk / (g.k[1] * g.k[2]), kh = (kk / g.k[2]) % g.k[1], kw = kk % g.k[2];
      const T* src = x + c * V;
      T* dst = col + r * P;
      const int64_t offd = kd * g.dil[0] - g.pad[0], offh = kh * g.dil[1] - g.pad[1];
      const int64_t offw = kw * g.dil[2] - g.pad[2], sw = g.stride[2];
      int64_t wlo, whi;
      valid_range(offw, sw, g.in[2], oW, &wlo, &whi);
      for (int64_t od = 0; od < oD; ++od) {
        const int64_t id = od * g.stride[0] + offd;
        for (int64_t oh = 0; oh < oH; ++oh) {
          const int64_t ih = oh * g.stride[1] + offh;
          T* drow = dst + (od * oH + oh) * oW;
          if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1]) {
            std::fill(drow, drow + oW, T(0));
            continue;
          }
          const T* srow = src + (id * g.in[1] + ih) * g.in[2] + offw;
          std::fill(drow, drow + wlo, T(0));
          if (sw == 1) {
            std::memcpy(drow + wlo, srow + wlo, sizeof(T) * (whi - wlo));
          } else {
            for (int64_t ow = wlo; ow < whi; ++ow) drow[ow] = srow[ow * sw];
          }
          std::fill(drow + whi, drow + oW, T(0));
        }
      }
    }
  });
}

template <typename T>
void col2im3(const T* col, int64_t C, const Geom3& g, T* img) {
  const int64_t K = g.k_vol(), P = g.out_vol(), V = g.in_vol();
  const int64_t oD = g.out[0], oH = g.out[1], oW = g.out[2];
  // One task per channel: every write of channel c lands in its own image plane.
  parallel_chunks(C, min_items(K * P), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      T* dst = img + c * V;
      std::fill(dst, dst + V, T(0));
      for (int64_t kk = 0; kk < K; ++kk) {
        const int64_t kd = kk / (g.k[1] * g.k[2]), kh = (kk / g.k[2]) % g.k[1];
        const int64_t kw = kk % g.k[2];
        const T* src = col + (c * K + kk) * P;
        const int64_t offd = kd * g.dil[0] - g.pad[0], offh = kh * g.dil[1] - g.pad[1];
        const int64_t offw = kw * g.dil[2] - g.pad[2], sw = g.stride[2];
        int64_t wlo, whi;
        valid_range(offw, sw, g.in[2], oW, &wlo, &whi);
        for (int64_t od = 0; od < oD; ++od) {
          const int64_t id = od * g.stride[0] + offd;
          if (id < 0 || id >= g.in[0]) continue;
          for (int64_t oh = 0; oh < oH; ++oh) {
            const int64_t ih = oh * g.stride[1] + offh;
            if (ih < 0 || ih >= g.in[1]) continue;
            const T* srow = src + (od * oH + oh) * oW;
            T* drow = dst + (id * g.in[1] + ih) * g.in[2] + offw;
            for (int64_t ow = wlo; ow < whi; ++ow) drow[ow * sw] += srow[ow];
          }
        }
      }
    }
  });
}

template <typename T>
void depthwise_conv3(const T* x, const T* w, const T* bias, T lo, T hi, int64_t planes,
                     int64_t C, const Geom3& g, T* y, Impl impl) {
  const int64_t work = g.in_vol() + g.out_vol() * g.k_vol();
  parallel_chunks(planes, min_items(work), [&](int64_t p0, int64_t p1) {
#if defined(FASTQ_HAVE_X86)
    if (impl == Impl::Avx512Vnni)
      return depthwise_planes_avx512(x, w, bias, lo, hi, p0, p1, C, g, y);
    if (impl == Impl::Avx2) return depthwise_planes_avx2(x, w, bias, lo, hi, p0, p1, C, g, y);
#endif
    (void)impl;
    dw_body(x, w, bias, lo, hi, p0, p1, C, g, y);
  });
}

template void im2col3<float>(const float*, int64_t, const Geom3&, float*);
template void im2col3<double>(const double*, int64_t, const Geom3&, double*);
template void col2im3<float>(const float*, int64_t, const Geom3&, float*);
template void col2im3<double>(const double*, int64_t, const Geom3&, double*);
template void depthwise_conv3<float>(const float*, const float*, const float*, float, float,
                                     int64_t,
                                     int64_t, const Geom3&, float*, Impl);
template void depthwise_conv3<double>(const double*, const double*, const double*, double,
                                      double, int64_t,
                                      int64_t, const Geom3&, double*, Impl);

}  // namespace nn
}  // namespace fastq
