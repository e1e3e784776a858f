// oneDNN convolutions for XLA:CPU, called from JAX through the XLA FFI (jax.ffi.ffi_call).
//
// Three handlers on NHWC float32 activations and HWIO kernels ((kh, kw, Cin / groups, Cout), the
// layout of ghostnets_jax.layers.Conv2d and of lax.conv_general_dilated with ('NHWC', 'HWIO',
// 'NHWC')): the forward convolution and its two gradients (input and kernel). oneDNN reads and
// writes the activations in place in NHWC ("nhwc"/"acdb"); the kernel is reordered to the
// primitive's blocked layout on each call (it is small). Primitives are built once per geometry
// and cached; the scratchpad and the reordered kernels live in buffers of the calling thread,
// reused from call to call (a fresh allocation of that size would be page-faulted in each time),
// so concurrent calls of one primitive from different threads are safe.
//
// Built by ghostnets_jax/layers/onednn.py against the oneDNN wheel (onednn-cpu-gomp,
// onednn-devel-cpu-gomp) and jaxlib's FFI headers (jax.ffi.include_dir()).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The geometry of one convolution: input (n, h, w, c), kernel (kh, kw), output (oh, ow, o),
// strides, dilations (1 = none), paddings (top, bottom, left, right) and groups.
struct Geometry {
  int64_t n, h, w, c, kh, kw, o, oh, ow, sh, sw, dh, dw, pt, pb, pl, pr, g;
  auto Key() const {
    return std::make_tuple(n, h, w, c, kh, kw, o, oh, ow, sh, sw, dh, dw, pt, pb, pl, pr, g);
  }
};

dnnl::memory::desc Activations(const Geometry& q) {
  return {{q.n, q.c, q.h, q.w}, dt::f32, tag::nhwc};
}
dnnl::memory::desc Outputs(const Geometry& q) {
  return {{q.n, q.o, q.oh, q.ow}, dt::f32, tag::nhwc};
}
// HWIO in oneDNN's terms: "hwio" for one group; for groups, the output axis of HWIO is
// (group, output within group), which is oneDNN's "hwigo".
dnnl::memory::desc Kernel(const Geometry& q, bool any) {
  if (q.g == 1) return {{q.o, q.c, q.kh, q.kw}, dt::f32, any ? tag::any : tag::hwio};
  return {{q.g, q.o / q.g, q.c / q.g, q.kh, q.kw}, dt::f32, any ? tag::any : tag::hwigo};
}

struct Primitives {
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_backward_data::primitive_desc data_pd;
  dnnl::convolution_backward_weights::primitive_desc weights_pd;
  dnnl::primitive fwd, data, weights;
};

std::shared_ptr<Primitives> Get(const Geometry& q) {
  static std::mutex mu;
  static std::map<decltype(q.Key()), std::shared_ptr<Primitives>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& p = cache[q.Key()];
  if (p) return p;
  auto made = std::make_shared<Primitives>();
  dnnl::memory::dims strides{q.sh, q.sw}, dilates{q.dh - 1, q.dw - 1};
  dnnl::memory::dims pad_l{q.pt, q.pl}, pad_r{q.pb, q.pr};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto algo = dnnl::algorithm::convolution_direct;
  made->fwd_pd = dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, algo, Activations(q), Kernel(q, true),
      Outputs(q), strides, dilates, pad_l, pad_r, attr);
  made->data_pd = dnnl::convolution_backward_data::primitive_desc(
      Engine(), algo, Activations(q), Kernel(q, true), Outputs(q), strides, dilates, pad_l, pad_r,
      made->fwd_pd, attr);
  made->weights_pd = dnnl::convolution_backward_weights::primitive_desc(
      Engine(), algo, Activations(q), Kernel(q, true), Outputs(q), strides, dilates, pad_l, pad_r,
      made->fwd_pd, attr);
  made->fwd = dnnl::convolution_forward(made->fwd_pd);
  made->data = dnnl::convolution_backward_data(made->data_pd);
  made->weights = dnnl::convolution_backward_weights(made->weights_pd);
  p = made;
  return p;
}

// A buffer of the calling thread for `md`, grown when too small and otherwise reused. `slot`
// tells apart the buffers one call needs at once.
dnnl::memory ThreadBuffer(const dnnl::memory::desc& md, int slot) {
  constexpr size_t kAlign = 64;   // a cache line, as oneDNN's own allocations
  thread_local std::vector<char> buffers[2];
  auto& b = buffers[slot];
  size_t need = md.get_size() + kAlign;
  if (b.size() < need) b.resize(need);
  auto at = reinterpret_cast<uintptr_t>(b.data());
  return dnnl::memory(md, Engine(), reinterpret_cast<void*>((at + kAlign - 1) / kAlign * kAlign));
}

void Reorder(dnnl::memory& from, dnnl::memory& to, dnnl::stream& s) {
  dnnl::reorder(from, to).execute(s, from, to);
}

// The kernel in the primitive's layout (a reordered copy when it differs from HWIO).
dnnl::memory KernelFor(const Geometry& q, void* data, const dnnl::memory::desc& want,
                       dnnl::stream& s) {
  dnnl::memory user(Kernel(q, false), Engine(), data);
  if (want == user.get_desc()) return user;
  dnnl::memory m = ThreadBuffer(want, 1);
  Reorder(user, m, s);
  return m;
}

void Execute(dnnl::primitive& prim, const dnnl::memory::desc& scratch_md,
             std::unordered_map<int, dnnl::memory> args, dnnl::stream& s) {
  args.insert({DNNL_ARG_SCRATCHPAD, ThreadBuffer(scratch_md, 0)});
  prim.execute(s, args);
}

Geometry Make(ffi::Span<const int64_t> in, ffi::Span<const int64_t> kernel,
              ffi::Span<const int64_t> out, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
              int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t g) {
  return Geometry{in[0], in[1], in[2], in[3], kernel[0], kernel[1], out[3], out[1], out[2],
                  sh, sw, dh, dw, pt, pb, pl, pr, g};
}

ffi::Error Checked(const std::function<void()>& body) {
  try {
    body();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN convolution: ") + e.what());
  }
  return ffi::Error::Success();
}

}  // namespace

#define GEOMETRY_ATTRS                                                                      \
  int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pb, int64_t pl, int64_t pr, \
      int64_t groups
#define GEOMETRY_ARGS sh, sw, dh, dw, pt, pb, pl, pr, groups

// y = conv(x, kernel)
static ffi::Error ConvForward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> kernel,
                              ffi::ResultBuffer<ffi::F32> y, GEOMETRY_ATTRS) {
  return Checked([&] {
    Geometry q = Make(x.dimensions(), kernel.dimensions(), y->dimensions(), GEOMETRY_ARGS);
    auto p = Get(q);
    dnnl::stream s(Engine());
    dnnl::memory src(Activations(q), Engine(), x.typed_data());
    dnnl::memory dst(Outputs(q), Engine(), y->typed_data());
    dnnl::memory wei = KernelFor(q, kernel.typed_data(), p->fwd_pd.weights_desc(), s);
    Execute(p->fwd, p->fwd_pd.scratchpad_desc(),
            {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}}, s);
    s.wait();
  });
}

// dx = the input gradient of conv(x, kernel) for the output gradient dy.
static ffi::Error ConvInputGrad(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> kernel,
                                ffi::ResultBuffer<ffi::F32> dx, GEOMETRY_ATTRS) {
  return Checked([&] {
    Geometry q = Make(dx->dimensions(), kernel.dimensions(), dy.dimensions(), GEOMETRY_ARGS);
    auto p = Get(q);
    dnnl::stream s(Engine());
    dnnl::memory diff_dst(Outputs(q), Engine(), dy.typed_data());
    dnnl::memory diff_src(Activations(q), Engine(), dx->typed_data());
    dnnl::memory wei = KernelFor(q, kernel.typed_data(), p->data_pd.weights_desc(), s);
    Execute(p->data, p->data_pd.scratchpad_desc(),
            {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, diff_src}},
            s);
    s.wait();
  });
}

// dkernel = the kernel gradient of conv(x, kernel) for the output gradient dy.
static ffi::Error ConvKernelGrad(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                                 ffi::ResultBuffer<ffi::F32> dkernel, GEOMETRY_ATTRS) {
  return Checked([&] {
    Geometry q = Make(x.dimensions(), dkernel->dimensions(), dy.dimensions(), GEOMETRY_ARGS);
    auto p = Get(q);
    dnnl::stream s(Engine());
    dnnl::memory src(Activations(q), Engine(), x.typed_data());
    dnnl::memory diff_dst(Outputs(q), Engine(), dy.typed_data());
    dnnl::memory user(Kernel(q, false), Engine(), dkernel->typed_data());
    const auto& want = p->weights_pd.diff_weights_desc();
    bool direct = want == user.get_desc();
    dnnl::memory diff_wei = direct ? user : ThreadBuffer(want, 1);
    Execute(p->weights, p->weights_pd.scratchpad_desc(),
            {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_WEIGHTS, diff_wei}},
            s);
    if (!direct) Reorder(diff_wei, user, s);
    s.wait();
  });
}

#define BIND                                                                            \
  ffi::Ffi::Bind()                                                                       \
      .Arg<ffi::Buffer<ffi::F32>>()                                                      \
      .Arg<ffi::Buffer<ffi::F32>>()                                                      \
      .Ret<ffi::Buffer<ffi::F32>>()                                                      \
      .Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("dh").Attr<int64_t>("dw")   \
      .Attr<int64_t>("pt").Attr<int64_t>("pb").Attr<int64_t>("pl").Attr<int64_t>("pr")   \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(GhostnetsOnednnConvForward, ConvForward, BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(GhostnetsOnednnConvInputGrad, ConvInputGrad, BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(GhostnetsOnednnConvKernelGrad, ConvKernelGrad, BIND);
