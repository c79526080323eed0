// Each binding file registers one family of functions on the module. Bindings check dtype,
// contiguity and shape, release the GIL, call the C++ core and throw std::invalid_argument
// (ValueError in Python). No logic lives here.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <string>

#include "fastq/conv.h"

namespace fastq {
namespace py = pybind11;

void bind_platform(py::module_& m);  // bind_platform.cpp: cpu features, threads, impls
void bind_gemm(py::module_& m);      // bind_gemm.cpp: pack_weights, gemm_u8s8, qlinear
void bind_conv(py::module_& m);      // bind_conv.cpp: pack_conv_weights, conv_u8s8, qconv
void bind_conv_dw(py::module_& m);   // bind_conv_dw.cpp: direct depthwise int8 conv
void bind_conv_nhwc(py::module_& m);  // bind_conv_nhwc.cpp: NHWC int8 conv, fused requant
void bind_requant(py::module_& m);   // bind_requant.cpp: requantize, (de)quantize_f32
void bind_stats(py::module_& m);     // bind_stats.cpp: statistics collectors
void bind_runtime(py::module_& m);   // bind_runtime.cpp: float/int8 conv and other op kernels
void bind_satcount(py::module_& m);  // bind_satcount.cpp: conv saturation counts, error stats
void bind_nn_nhwc(py::module_& m);    // bind_nn_nhwc.cpp: NHWC float conv kernels

// Shared argument checks (throw std::invalid_argument with the shapes in the message).
void require_ndim(const py::array& a, int ndim, const char* what);
void require_c_contiguous(const py::array& a, const char* what);
std::string shape_str(const py::array& a);

// Conv geometry from a 4-D NCHW x and resolved attributes (bind_conv.cpp), checked: strides
// and dilations >= 1, pads >= 0, group dividing C and OC, a non-empty output.
ConvShape make_shape(const py::array& x, int64_t OC, int64_t KH, int64_t KW, int64_t group,
                     std::array<int64_t, 2> strides, std::array<int64_t, 4> pads,
                     std::array<int64_t, 2> dil);
// The same from (N, C, H, W) given separately (an NHWC x), x_shape naming it in errors.
ConvShape make_shape_dims(std::array<int64_t, 4> nchw, int64_t OC, int64_t KH, int64_t KW,
                          int64_t group, std::array<int64_t, 2> strides,
                          std::array<int64_t, 4> pads, std::array<int64_t, 2> dil,
                          const std::string& x_shape);
Pairing parse_pairing(const std::string& s);
// x's channel count against packed weights (C == Cg * group), and a uint8 input zero point.
void require_conv_channels(const ConvShape& s, const PackedConv& w);
// bind_conv_nhwc.cpp: the shape of a u8 conv input x, [N, H, W, C] when layout is "nhwc" (then
// x_nhwc = true), [N, C, H, W] when "nchw"; C-contiguous, channels checked against w.
ConvShape nhwc_shape(const py::array& x, const std::string& layout, const PackedConv& w,
                     std::array<int64_t, 2> strides, std::array<int64_t, 4> pads,
                     std::array<int64_t, 2> dil, bool& x_nhwc);
void require_u8_zero_point(int x_zp);

// Per-output-channel epilogue arguments shared by qlinear and qconv: w_scales (1 or n
// float32 entries) and an optional float32 bias of n entries (nullptr when None).
void check_scales(const py::array& w_scales, int64_t n);
const float* optional_bias(const py::object& bias, int64_t n, py::array& keep_alive);

// dtype equivalence, as numpy decides it: two dtype objects can describe the same type
// without being the same object (e.g. arrays unpickled in another process).
inline bool same_dtype(const py::dtype& a, const py::dtype& b) {
  return py::detail::npy_api::get().PyArray_EquivTypes_(a.ptr(), b.ptr());
}

template <class T>
void require_dtype(const py::array& a, const char* what, const char* dtype_name) {
  if (!same_dtype(a.dtype(), py::dtype::of<T>()))
    throw std::invalid_argument(std::string(what) + " must have dtype " + dtype_name + ", got " +
                                std::string(py::str(a.dtype())));
}
}  // namespace fastq
