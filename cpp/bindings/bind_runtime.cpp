// Float op kernels for the executor: im2col / col2im (Conv, ConvTranspose), direct depthwise
// conv, N-D pooling and one separable Resize pass. Spatial lists have 1..3 entries and are
// padded to the kernels' canonical 3-D geometry here; the Python ops compute output extents
// and pads (auto_pad, ceil_mode) and validate shapes first, so errors here are internal.
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bindings.h"
#include "fastq/cpu_features.h"
#include "fastq/nn_eltwise.h"
#include "fastq/nn_f32.h"

namespace fastq {
namespace {

using Ints = std::vector<int64_t>;

void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

// Pads each list to 3 entries with leading `fill` values.
void put3(int64_t dst[3], const Ints& v, int64_t fill, const char* what, size_t nd) {
  require(v.size() == nd, std::string(what) + " must have " + std::to_string(nd) +
                              " entries, got " + std::to_string(v.size()));
  const size_t lead = 3 - nd;
  for (size_t i = 0; i < 3; ++i) dst[i] = i < lead ? fill : v[i - lead];
}

nn::Geom3 make_geom(const Ints& in, const Ints& out, const Ints& k, const Ints& s,
                    const Ints& d, const Ints& pad) {
  const size_t nd = in.size();
  require(nd >= 1 && nd <= 3, "1 to 3 spatial dims are supported, got " + std::to_string(nd));
  nn::Geom3 g;
  put3(g.in, in, 1, "input extent", nd);
  put3(g.out, out, 1, "output extent", nd);
  put3(g.k, k, 1, "kernel_shape", nd);
  put3(g.stride, s, 1, "strides", nd);
  put3(g.dil, d, 1, "dilations", nd);
  put3(g.pad, pad, 0, "pads", nd);
  for (int i = 0; i < 3; ++i) {
    require(g.in[i] >= 0 && g.out[i] >= 0 && g.k[i] >= 1 && g.stride[i] >= 1 && g.dil[i] >= 1,
            "bad window geometry (kernel, strides, dilations must be >= 1)");
  }
  return g;
}

Ints spatial(const py::array& a, int from) {
  Ints v;
  for (int i = from; i < a.ndim(); ++i) v.push_back(a.shape(i));
  return v;
}

Ints with_prefix(Ints lead, const Ints& tail) {
  lead.insert(lead.end(), tail.begin(), tail.end());
  return lead;
}

template <typename T>
const T* cptr(const py::array& a) { return static_cast<const T*>(a.data()); }
template <typename T>
T* mptr(py::array& a) { return static_cast<T*>(a.mutable_data()); }

bool is_f32(const py::array& a) { return same_dtype(a.dtype(), py::dtype::of<float>()); }
bool is_f64(const py::array& a) { return same_dtype(a.dtype(), py::dtype::of<double>()); }

void require_float(const py::array& a, const char* what) {
  require(is_f32(a) || is_f64(a), std::string(what) + " must be float32 or float64");
}

// "ref", "avx2" or "avx512vnni" (the float kernels' AVX-512 build needs only the F/BW/VL/DQ
// part of that impl, but shares its object library and so its CPU requirement).
Impl float_impl(const std::string& name) {
  const Impl impl = parse_impl(name);
  const std::string missing = impl_missing_feature(impl);
  if (!missing.empty())
    throw std::invalid_argument("impl '" + name + "' needs CPU feature " + missing);
#if !defined(FASTQ_HAVE_X86)
  if (impl != Impl::Ref) throw std::invalid_argument("impl '" + name + "' is not built here");
#endif
  return impl;
}

py::array im2col(const py::array& x, const Ints& k, const Ints& s, const Ints& d,
                 const Ints& pad, const Ints& out) {
  require_float(x, "x");
  require_c_contiguous(x, "x");
  require(x.ndim() >= 2, "x must be (C, *spatial)");
  const nn::Geom3 g = make_geom(spatial(x, 1), out, k, s, d, pad);
  const int64_t C = x.shape(0);
  py::array col(x.dtype(), Ints{C * g.k_vol(), g.out_vol()});
  {
    py::gil_scoped_release nogil;
    if (is_f32(x)) nn::im2col3(cptr<float>(x), C, g, mptr<float>(col));
    else nn::im2col3(cptr<double>(x), C, g, mptr<double>(col));
  }
  return col;
}

py::array col2im(const py::array& col, int64_t C, const Ints& image, const Ints& k,
                 const Ints& s, const Ints& d, const Ints& pad, const Ints& cols) {
  require_float(col, "col");
  require_c_contiguous(col, "col");
  require_ndim(col, 2, "col");
  const nn::Geom3 g = make_geom(image, cols, k, s, d, pad);
  require(col.shape(0) == C * g.k_vol() && col.shape(1) == g.out_vol(),
          "col must be (C*kernel volume, column positions)");
  py::array img(col.dtype(), with_prefix(Ints{C}, image));
  {
    py::gil_scoped_release nogil;
    if (is_f32(col)) nn::col2im3(cptr<float>(col), C, g, mptr<float>(img));
    else nn::col2im3(cptr<double>(col), C, g, mptr<double>(img));
  }
  return img;
}

py::array conv_depthwise(const py::array& x, const py::array& w, const py::object& bias,
                         const Ints& s, const Ints& d, const Ints& pad, const Ints& out,
                         const std::string& impl_name, double lo, double hi) {
  const Impl impl = float_impl(impl_name);
  require_float(x, "x");
  require_c_contiguous(x, "x");
  require_c_contiguous(w, "w");
  require(x.ndim() >= 3, "x must be (N, C, *spatial)");
  require(same_dtype(w.dtype(), x.dtype()) && w.ndim() == x.ndim(), "w must match x's dtype and rank");
  const int64_t N = x.shape(0), C = x.shape(1);
  require(w.shape(0) == C && w.shape(1) == 1, "w must be (C, 1, *kernel)");
  const nn::Geom3 g = make_geom(spatial(x, 2), out, spatial(w, 2), s, d, pad);
  py::array b;  // default-constructed py::array is an empty array, not null: track presence
  const bool has_bias = !bias.is_none();
  if (has_bias) {
    b = bias.cast<py::array>();
    require(same_dtype(b.dtype(), x.dtype()) && b.ndim() == 1 && b.shape(0) == C,
            "bias must be (C,) of x's dtype");
    require_c_contiguous(b, "bias");
  }
  py::array y(x.dtype(), with_prefix(Ints{N, C}, out));
  {
    py::gil_scoped_release nogil;
    if (is_f32(x))
      nn::depthwise_conv3(cptr<float>(x), cptr<float>(w), has_bias ? cptr<float>(b) : nullptr,
                          static_cast<float>(lo), static_cast<float>(hi), N * C, C, g,
                          mptr<float>(y), impl);
    else
      nn::depthwise_conv3(cptr<double>(x), cptr<double>(w), has_bias ? cptr<double>(b) : nullptr,
                          lo, hi, N * C, C, g, mptr<double>(y), impl);
  }
  return y;
}

template <typename T>
void run_pool(const py::array& x, int64_t planes, const nn::Geom3& g, const nn::PoolArgs& a,
              py::array& y, int64_t* idx, Impl impl) {
  nn::pool3(cptr<T>(x), planes, g, a, mptr<T>(y), idx, impl);
}

py::object pool(const py::array& x, const std::string& kind, const Ints& k, const Ints& s,
                const Ints& d, const Ints& pad_begin, const Ints& pad_end, const Ints& out,
                bool count_include_pad, int64_t p, bool want_indices, int64_t storage_order,
                const std::string& impl_name) {
  const Impl impl = float_impl(impl_name);
  require_c_contiguous(x, "x");
  require(x.ndim() >= 3, "x must be (N, C, *spatial)");
  nn::PoolArgs a;
  if (kind == "max") a.kind = nn::PoolKind::kMax;
  else if (kind == "avg") a.kind = nn::PoolKind::kAvg;
  else if (kind == "lp") a.kind = nn::PoolKind::kLp;
  else throw std::invalid_argument("pool kind must be max, avg or lp, got " + kind);
  const bool is_i8 = same_dtype(x.dtype(), py::dtype::of<int8_t>());
  const bool is_u8 = same_dtype(x.dtype(), py::dtype::of<uint8_t>());
  require(is_f32(x) || is_f64(x) || ((is_i8 || is_u8) && a.kind == nn::PoolKind::kMax),
          "x must be float32/float64 (or int8/uint8 for max pooling)");
  require(!want_indices || a.kind == nn::PoolKind::kMax, "indices exist for max pooling only");
  require(p >= 1, "p must be >= 1");
  const Ints sp = spatial(x, 2);
  const nn::Geom3 g = make_geom(sp, out, k, s, d, pad_begin);
  put3(a.pad_end, pad_end, 0, "pads (end)", sp.size());
  a.count_include_pad = count_include_pad;
  a.p = p;
  a.col_major = storage_order == 1;
  const int64_t planes = x.shape(0) * x.shape(1);
  const Ints yshape = with_prefix(Ints{x.shape(0), x.shape(1)}, out);
  py::array y(x.dtype(), yshape);
  py::array_t<int64_t> idx;
  if (want_indices) idx = py::array_t<int64_t>(yshape);
  int64_t* ip = want_indices ? idx.mutable_data() : nullptr;
  {
    py::gil_scoped_release nogil;
    if (is_f32(x)) run_pool<float>(x, planes, g, a, y, ip, impl);
    else if (is_f64(x)) run_pool<double>(x, planes, g, a, y, ip, impl);
    else if (is_i8) run_pool<int8_t>(x, planes, g, a, y, ip, impl);
    else run_pool<uint8_t>(x, planes, g, a, y, ip, impl);
  }
  if (want_indices) return py::make_tuple(y, idx);
  return std::move(y);
}

py::array resize_axis(const py::array& x, const py::array& idx, const py::array& w) {
  require_float(x, "x");
  require_c_contiguous(x, "x");
  require_ndim(x, 3, "x");
  require_ndim(idx, 2, "idx");
  require_ndim(w, 2, "w");
  require_c_contiguous(idx, "idx");
  require_c_contiguous(w, "w");
  require(same_dtype(idx.dtype(), py::dtype::of<int64_t>()), "idx must be int64");
  require(same_dtype(w.dtype(), x.dtype()), "w must have x's dtype");
  require(idx.shape(0) == w.shape(0) && idx.shape(1) == w.shape(1) && idx.shape(1) >= 1,
          "idx and w must both be (n_out, taps)");
  const int64_t outer = x.shape(0), n_in = x.shape(1), inner = x.shape(2);
  const int64_t n_out = idx.shape(0), taps = idx.shape(1);
  const int64_t* ip = cptr<int64_t>(idx);
  for (int64_t i = 0; i < n_out * taps; ++i)
    require(ip[i] >= 0 && ip[i] < n_in, "tap index out of range");
  py::array y(x.dtype(), Ints{outer, n_out, inner});
  {
    py::gil_scoped_release nogil;
    if (is_f32(x))
      nn::resize_axis(cptr<float>(x), outer, n_in, inner, ip, cptr<float>(w), n_out, taps,
                      mptr<float>(y));
    else
      nn::resize_axis(cptr<double>(x), outer, n_in, inner, ip, cptr<double>(w), n_out, taps,
                      mptr<double>(y));
  }
  return y;
}

py::array winograd_input(const py::array& x, int64_t ph, int64_t pw, int64_t th, int64_t tw) {
  require_float(x, "x");
  require_c_contiguous(x, "x");
  require_ndim(x, 3, "x");
  require(ph >= 0 && pw >= 0 && th >= 1 && tw >= 1, "pads >= 0 and tile counts >= 1");
  const int64_t C = x.shape(0), H = x.shape(1), W = x.shape(2);
  py::array v(x.dtype(), Ints{16, C, th * tw});
  {
    py::gil_scoped_release nogil;
    if (is_f32(x))
      nn::winograd_f23_input(cptr<float>(x), C, H, W, ph, pw, th, tw, mptr<float>(v));
    else
      nn::winograd_f23_input(cptr<double>(x), C, H, W, ph, pw, th, tw, mptr<double>(v));
  }
  return v;
}

py::array winograd_output(const py::array& m, int64_t th, int64_t tw, int64_t oH, int64_t oW,
                          const py::object& bias) {
  require_float(m, "m");
  require_c_contiguous(m, "m");
  require_ndim(m, 3, "m");
  require(m.shape(0) == 16 && m.shape(2) == th * tw, "m must be (16, M, th*tw)");
  require(oH >= 1 && oW >= 1 && oH <= 2 * th && oW <= 2 * tw, "output must fit the tiles");
  const int64_t M = m.shape(1);
  py::array b;
  const bool has_bias = !bias.is_none();
  if (has_bias) {
    b = bias.cast<py::array>();
    require(same_dtype(b.dtype(), m.dtype()) && b.ndim() == 1 && b.shape(0) == M,
            "bias must be (M,) of m's dtype");
    require_c_contiguous(b, "bias");
  }
  py::array y(m.dtype(), Ints{M, oH, oW});
  {
    py::gil_scoped_release nogil;
    if (is_f32(m))
      nn::winograd_f23_output(cptr<float>(m), M, th, tw, oH, oW,
                              has_bias ? cptr<float>(b) : nullptr, mptr<float>(y));
    else
      nn::winograd_f23_output(cptr<double>(m), M, th, tw, oH, oW,
                              has_bias ? cptr<double>(b) : nullptr, mptr<double>(y));
  }
  return y;
}

// In place: y (N, C, *rest) = clamp(y + bias[c], lo, hi); bias (C,) or None.
void bias_act(py::array& y, const py::object& bias, double lo, double hi,
              const std::string& impl_name) {
  const Impl impl = float_impl(impl_name);
  require_float(y, "y");
  require_c_contiguous(y, "y");
  require(y.writeable(), "y must be writeable");
  require(y.ndim() >= 2, "y must be (N, C, ...)");
  const int64_t N = y.shape(0), C = y.shape(1);
  const int64_t inner = C == 0 || N == 0 ? 0 : y.size() / (N * C);
  py::array b;
  const bool has_bias = !bias.is_none();
  if (has_bias) {
    b = bias.cast<py::array>();
    require(same_dtype(b.dtype(), y.dtype()) && b.ndim() == 1 && b.shape(0) == C,
            "bias must be (C,) of y's dtype");
    require_c_contiguous(b, "bias");
  }
  py::gil_scoped_release nogil;
  if (is_f32(y))
    nn::bias_act(mptr<float>(y), N * C, C, inner, has_bias ? cptr<float>(b) : nullptr,
                 static_cast<float>(lo), static_cast<float>(hi), impl);
  else
    nn::bias_act(mptr<double>(y), N * C, C, inner, has_bias ? cptr<double>(b) : nullptr, lo,
                 hi, impl);
}

py::array erf_f32(const py::array& x, const std::string& impl_name) {
  const Impl impl = float_impl(impl_name);
  require(is_f32(x), "x must be float32");
  require_c_contiguous(x, "x");
  Ints shape;
  for (int i = 0; i < x.ndim(); ++i) shape.push_back(x.shape(i));
  py::array y(x.dtype(), shape);
  {
    py::gil_scoped_release nogil;
    nn::erf_f32(cptr<float>(x), x.size(), mptr<float>(y), impl);
  }
  return y;
}

py::array gelu_erf(const py::array& x, double c1, bool div, double c2, double c3, int form,
                   const std::string& impl_name) {
  const Impl impl = float_impl(impl_name);
  require(is_f32(x), "x must be float32");
  require_c_contiguous(x, "x");
  require(form >= 0 && form <= 2, "form must be 0, 1 or 2");
  Ints shape;
  for (int i = 0; i < x.ndim(); ++i) shape.push_back(x.shape(i));
  py::array y(x.dtype(), shape);
  {
    py::gil_scoped_release nogil;
    nn::gelu_erf_f32(cptr<float>(x), x.size(), static_cast<float>(c1), div,
                     static_cast<float>(c2), static_cast<float>(c3), form, mptr<float>(y), impl);
  }
  return y;
}

// x: C-contiguous float32 (rows, L) -> y of the same shape.
py::array softmax_rows(const py::array& x, const std::string& impl_name) {
  const Impl impl = float_impl(impl_name);
  require(is_f32(x), "x must be float32");
  require_c_contiguous(x, "x");
  require(x.ndim() == 2, "x must be 2-D (rows, L)");
  const int64_t rows = x.shape(0), L = x.shape(1);
  py::array y(x.dtype(), Ints{rows, L});
  if (L > 0) {
    py::gil_scoped_release nogil;
    nn::softmax_rows_f32(cptr<float>(x), rows, L, mptr<float>(y), impl);
  }
  return y;
}

// x: C-contiguous float32 (rows, L), scale (L,), bias (L,) or None -> (y, mean, inv_std).
py::tuple layernorm_rows(const py::array& x, const py::array& scale, const py::object& bias,
                         double eps, const std::string& impl_name) {
  const Impl impl = float_impl(impl_name);
  require(is_f32(x), "x must be float32");
  require_c_contiguous(x, "x");
  require(x.ndim() == 2, "x must be 2-D (rows, L)");
  const int64_t rows = x.shape(0), L = x.shape(1);
  require(is_f32(scale) && scale.ndim() == 1 && scale.shape(0) == L,
          "scale must be float32 of shape (L,)");
  require_c_contiguous(scale, "scale");
  const float* bp = nullptr;
  py::array b;
  if (!bias.is_none()) {
    b = bias.cast<py::array>();
    require(is_f32(b) && b.ndim() == 1 && b.shape(0) == L, "bias must be float32 of shape (L,)");
    require_c_contiguous(b, "bias");
    bp = cptr<float>(b);
  }
  py::array y(x.dtype(), Ints{rows, L}), mean(x.dtype(), Ints{rows}), inv(x.dtype(), Ints{rows});
  if (L > 0) {
    py::gil_scoped_release nogil;
    nn::layernorm_rows_f32(cptr<float>(x), rows, L, cptr<float>(scale), bp,
                           static_cast<float>(eps), mptr<float>(y), mptr<float>(mean),
                           mptr<float>(inv), impl);
  }
  return py::make_tuple(y, mean, inv);
}

}  // namespace

void bind_runtime(py::module_& m) {
  m.def("nn_im2col", &im2col, py::arg("x").noconvert(), py::arg("kernel"), py::arg("strides"),
        py::arg("dilations"), py::arg("pads"), py::arg("out_shape"),
        "(C, *in) -> (C*prod(kernel), prod(out_shape)) columns; zeros outside the input.");
  m.def("nn_col2im", &col2im, py::arg("col").noconvert(), py::arg("channels"),
        py::arg("image_shape"), py::arg("kernel"), py::arg("strides"), py::arg("dilations"),
        py::arg("pads"), py::arg("col_shape"),
        "Adjoint of nn_im2col: sums columns back into a (C, *image_shape) image.");
  m.def("nn_bias_act", &bias_act, py::arg("y").noconvert(), py::arg("bias"), py::arg("lo"),
        py::arg("hi"), py::arg("impl") = "ref",
        "In place: y (N, C, ...) = min(max(y + bias[c], lo), hi); bias (C,) or None.");
  m.def("nn_gelu_erf", &gelu_erf, py::arg("x").noconvert(), py::arg("c1"), py::arg("div"),
        py::arg("c2"), py::arg("c3"), py::arg("form"), py::arg("impl") = "ref",
        "An exported erf GELU in one pass, bit for bit its float32 ops (nn_eltwise.h).");
  m.def("nn_softmax_rows", &softmax_rows, py::arg("x").noconvert(), py::arg("impl") = "ref",
        "Softmax over the last axis of a float32 (rows, L) array.");
  m.def("nn_layernorm_rows", &layernorm_rows, py::arg("x").noconvert(),
        py::arg("scale").noconvert(), py::arg("bias"), py::arg("eps"), py::arg("impl") = "ref",
        "LayerNormalization over the last axis of float32 (rows, L): (y, mean, inv_std).");
  m.def("nn_erf", &erf_f32, py::arg("x").noconvert(), py::arg("impl") = "ref",
        "erf of a float32 array (rational approximation, max relative error 4.5e-7).");
  m.def("nn_conv_depthwise", &conv_depthwise, py::arg("x").noconvert(),
        py::arg("w").noconvert(), py::arg("bias"), py::arg("strides"), py::arg("dilations"),
        py::arg("pads"), py::arg("out_shape"), py::arg("impl") = "ref",
        py::arg("lo") = -std::numeric_limits<double>::infinity(),
        py::arg("hi") = std::numeric_limits<double>::infinity(),
        "Direct depthwise conv: x (N, C, *in), w (C, 1, *kernel), bias (C,) or None; output\n"
        "clamped to [lo, hi] (a fused Relu/Clip) in the same pass.");
  m.def("nn_pool", &pool, py::arg("x").noconvert(), py::arg("kind"), py::arg("kernel"),
        py::arg("strides"), py::arg("dilations"), py::arg("pads_begin"), py::arg("pads_end"),
        py::arg("out_shape"), py::arg("count_include_pad") = false, py::arg("p") = 2,
        py::arg("want_indices") = false, py::arg("storage_order") = 0, py::arg("impl") = "ref",
        "Max/avg/Lp pooling of x (N, C, *in); max may also return int64 Indices.");
  m.def("nn_winograd_input", &winograd_input, py::arg("x").noconvert(), py::arg("pad_h"),
        py::arg("pad_w"), py::arg("tiles_h"), py::arg("tiles_w"),
        "Winograd F(2x2,3x3) input transform: x (C, H, W) -> (16, C, tiles_h*tiles_w).");
  m.def("nn_winograd_output", &winograd_output, py::arg("m").noconvert(), py::arg("tiles_h"),
        py::arg("tiles_w"), py::arg("out_h"), py::arg("out_w"), py::arg("bias"),
        "Winograd F(2x2,3x3) output transform: (16, M, tiles) -> (M, out_h, out_w) + bias.");
  m.def("nn_resize_axis", &resize_axis, py::arg("x").noconvert(), py::arg("idx").noconvert(),
        py::arg("w").noconvert(),
        "y[o, j, i] = sum_t w[j, t] * x[o, idx[j, t], i] for x (outer, n_in, inner).");
}

}  // namespace fastq
