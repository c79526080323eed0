// Channels-last float32 conv kernels for the float executor (nn_nhwc.h): GEMM weight packing,
// 1x1 conv (GEMM), general group-1 conv (im2col rows + GEMM) and depthwise conv, each with
// the bias and a Relu/Clip clamp fused in its store. The Python conv op computes output
// extents and begin pads and validates shapes first, so errors here are internal.
#include <array>
#include <string>

#include <pybind11/stl.h>

#include "bindings.h"
#include "fastq/nn_nhwc.h"

namespace fastq {
namespace {

using I2 = std::array<int64_t, 2>;

void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

const float* fptr(const py::array& a) { return static_cast<const float*>(a.data()); }

void require_f32(const py::array& a, const char* what, int ndim) {
  require_dtype<float>(a, what, "float32");
  require_ndim(a, ndim, what);
  require_c_contiguous(a, what);
}

// The packed weights of nhwc_pack_gemm: (panels, K + 1, nr) for `impl`, covering m columns.
int64_t packed_k(const py::array& packed, int64_t m, Impl impl) {
  require_f32(packed, "packed", 3);
  const int64_t nr = nn::nhwc_panel_width(impl);
  require(packed.shape(2) == nr && packed.shape(0) == (m + nr - 1) / nr && m >= 1,
          "packed weights " + shape_str(packed) + " are not packed for impl '" +
              impl_name(impl) + "' with " + std::to_string(m) + " columns");
  return packed.shape(1) - 1;
}

py::array pack(const py::array& w, const py::object& bias, const std::string& impl_name_) {
  const Impl impl = parse_impl(impl_name_);
  require_f32(w, "w", 2);
  const int64_t K = w.shape(0), M = w.shape(1);
  require(K >= 1 && M >= 1, "w must be a non-empty (K, M) matrix, got " + shape_str(w));
  py::array keep;
  const float* b = optional_bias(bias, M, keep);
  const int64_t nr = nn::nhwc_panel_width(impl);
  py::array_t<float> out({(M + nr - 1) / nr, K + 1, nr});
  {
    py::gil_scoped_release nogil;
    nn::nhwc_pack_gemm(fptr(w), b, K, M, nr, out.mutable_data());
  }
  return out;
}

nn::NhwcGeom geom(int64_t N, int64_t H, int64_t W, int64_t C, I2 k, I2 s, I2 d, I2 p, I2 out) {
  nn::NhwcGeom g{N, H, W, C, out[0], out[1], k[0], k[1], s[0], s[1], d[0], d[1], p[0], p[1]};
  require(out[0] >= 1 && out[1] >= 1 && s[0] >= 1 && s[1] >= 1 && d[0] >= 1 && d[1] >= 1 &&
              p[0] >= 0 && p[1] >= 0 && k[0] >= 1 && k[1] >= 1,
          "bad NHWC conv geometry");
  // any output extent is safe: the kernels bounds-check every tap (taps outside the input,
  // e.g. under a larger end pad, contribute nothing)
  return g;
}

py::array conv1x1(const py::array& x, const py::array& packed, int64_t m, I2 s, I2 out,
                  double lo, double hi, const std::string& impl_name_) {
  const Impl impl = parse_impl(impl_name_);
  require_f32(x, "x", 4);
  const int64_t K = packed_k(packed, m, impl);
  require(x.shape(3) == K, "x " + shape_str(x) + " must be NHWC with " + std::to_string(K) +
                               " channels (the packed weights' K)");
  const nn::NhwcGeom g = geom(x.shape(0), x.shape(1), x.shape(2), K, {1, 1}, s, {1, 1},
                              {0, 0}, out);
  require((out[0] - 1) * s[0] < g.H && (out[1] - 1) * s[1] < g.W,
          "1x1 conv output extent too large for the input");
  py::array_t<float> y({x.shape(0), out[0], out[1], m});
  {
    py::gil_scoped_release nogil;
    nn::conv1x1_nhwc(fptr(x), g, fptr(packed), m, static_cast<float>(lo),
                     static_cast<float>(hi), y.mutable_data(), impl);
  }
  return y;
}

py::array conv_general(const py::array& x, const std::string& layout, const py::array& packed,
                       int64_t m, I2 k, I2 s, I2 d, I2 p, I2 out, double lo, double hi,
                       const std::string& impl_name_) {
  const Impl impl = parse_impl(impl_name_);
  require(layout == "nchw" || layout == "nhwc", "layout must be 'nchw' or 'nhwc'");
  const bool nchw = layout == "nchw";
  require_f32(x, "x", 4);
  const int64_t K = packed_k(packed, m, impl);
  const int64_t C = nchw ? x.shape(1) : x.shape(3);
  const int64_t H = nchw ? x.shape(2) : x.shape(1), W = nchw ? x.shape(3) : x.shape(2);
  require(K == k[0] * k[1] * C, "packed weights' K=" + std::to_string(K) +
                                    " is not kernel volume x channels of x " + shape_str(x));
  const nn::NhwcGeom g = geom(x.shape(0), H, W, C, k, s, d, p, out);
  py::array_t<float> y({x.shape(0), out[0], out[1], m});
  {
    py::gil_scoped_release nogil;
    nn::conv_nhwc(fptr(x), nchw, g, fptr(packed), m, static_cast<float>(lo),
                  static_cast<float>(hi), y.mutable_data(), impl);
  }
  return y;
}

py::array depthwise(const py::array& x, const py::array& w, const py::object& bias, I2 s, I2 d,
                    I2 p, I2 out, double lo, double hi, const std::string& impl_name_) {
  const Impl impl = parse_impl(impl_name_);
  require_f32(x, "x", 4);
  require_f32(w, "w", 3);
  const int64_t C = x.shape(3);
  require(w.shape(2) == C, "w " + shape_str(w) + " must be (KH, KW, C) for x " + shape_str(x));
  py::array keep;
  const float* b = optional_bias(bias, C, keep);
  const nn::NhwcGeom g = geom(x.shape(0), x.shape(1), x.shape(2), C, {w.shape(0), w.shape(1)},
                              s, d, p, out);
  py::array_t<float> y({x.shape(0), out[0], out[1], C});
  {
    py::gil_scoped_release nogil;
    nn::depthwise_nhwc(fptr(x), g, fptr(w), b, static_cast<float>(lo), static_cast<float>(hi),
                       y.mutable_data(), impl);
  }
  return y;
}

}  // namespace

void bind_nn_nhwc(py::module_& m) {
  m.def("nn_nhwc_panel_width",
        [](const std::string& impl) { return nn::nhwc_panel_width(parse_impl(impl)); },
        py::arg("impl") = "ref", "Column panel width of nn_nhwc_pack's layout for impl.");
  m.def("nn_nhwc_pack", &pack, py::arg("w").noconvert(), py::arg("bias"),
        py::arg("impl") = "ref",
        "Packs float32 W (K, M) and bias (M,) or None into (panels, K + 1, nr) for impl.");
  m.def("nn_conv1x1_nhwc", &conv1x1, py::arg("x").noconvert(), py::arg("packed").noconvert(),
        py::arg("m"), py::arg("strides"), py::arg("out_shape"), py::arg("lo"), py::arg("hi"),
        py::arg("impl") = "ref",
        "1x1 conv on NHWC x (N, H, W, C): y (N, OH, OW, m) = clamp(x[:, ::sh, ::sw] @ W + b).");
  m.def("nn_conv_nhwc", &conv_general, py::arg("x").noconvert(), py::arg("layout"),
        py::arg("packed").noconvert(), py::arg("m"), py::arg("kernel"), py::arg("strides"),
        py::arg("dilations"), py::arg("pads"), py::arg("out_shape"), py::arg("lo"),
        py::arg("hi"), py::arg("impl") = "ref",
        "Group-1 2-D conv, W packed as (KH*KW*C, M); x NCHW or NHWC; y NHWC (N, OH, OW, M).");
  m.def("nn_depthwise_nhwc", &depthwise, py::arg("x").noconvert(), py::arg("w").noconvert(),
        py::arg("bias"), py::arg("strides"), py::arg("dilations"), py::arg("pads"),
        py::arg("out_shape"), py::arg("lo"), py::arg("hi"), py::arg("impl") = "ref",
        "Depthwise conv on NHWC x (N, H, W, C), w (KH, KW, C): y (N, OH, OW, C).");
}

}  // namespace fastq
