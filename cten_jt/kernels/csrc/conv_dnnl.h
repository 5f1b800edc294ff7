// 2D and 3D convolution on oneDNN (CPU): forward, backward-data and
// backward-weights, each writing one output.  Jittor's own CPU conv3d is a
// broadcast-and-reduce loop and its conv2d runs oneDNN on plain layouts; these
// let oneDNN choose its layouts (blocked, e.g. nChw16c) and reorder the plain
// NC(D)HW arrays around the call.  Primitives are cached per shape.
//
// Sizes come as one int array `s` (see cten_jt/kernels/conv.py):
//   s = {nd, N, C, D, H, W, O, KD, KH, KW, SD, SH, SW, PD, PH, PW, OD, OH, OW}
// nd = 2 uses 4-D arrays (D = KD = SD = OD = 1, PD = 0), nd = 3 5-D ones.
//
// Frozen weights can be reordered once into the forward primitive's layout
// (cten_conv_weights_blocked) and then used as they are
// (cten_conv_forward_blocked): the same primitive, the same results, without
// a reorder of the weights on every call.
#pragma once
#include <dnnl.hpp>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace cten_conv {

using namespace dnnl;
using tag = memory::format_tag;

struct Plan {
    convolution_forward::primitive_desc fwd;
    convolution_backward_data::primitive_desc bwd_data;
    convolution_backward_weights::primitive_desc bwd_weights;
    convolution_forward fwd_prim;
    convolution_backward_data bwd_data_prim;
    convolution_backward_weights bwd_weights_prim;
};

inline engine& eng() {
    static engine e(engine::kind::cpu, 0);
    return e;
}

struct Dims {
    memory::dims src, wei, dst, strides, pad;
    tag act, wtag;
};

inline Dims dims_of(const int* s) {
    Dims d;
    if (s[0] == 2) {
        d.src = {s[1], s[2], s[4], s[5]};
        d.wei = {s[6], s[2], s[8], s[9]};
        d.dst = {s[1], s[6], s[17], s[18]};
        d.strides = {s[11], s[12]};
        d.pad = {s[14], s[15]};
        d.act = tag::nchw;
        d.wtag = tag::oihw;
    } else {
        d.src = {s[1], s[2], s[3], s[4], s[5]};
        d.wei = {s[6], s[2], s[7], s[8], s[9]};
        d.dst = {s[1], s[6], s[16], s[17], s[18]};
        d.strides = {s[10], s[11], s[12]};
        d.pad = {s[13], s[14], s[15]};
        d.act = tag::ncdhw;
        d.wtag = tag::oidhw;
    }
    return d;
}

inline Plan& plan_for(const int* s) {
    static std::map<std::vector<int>, Plan> plans;
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    std::vector<int> key(s, s + 19);
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    Dims d = dims_of(s);
    auto f32 = memory::data_type::f32;
    memory::desc src(d.src, f32, tag::any), wei(d.wei, f32, tag::any), dst(d.dst, f32, tag::any);
    auto fwd = convolution_forward::primitive_desc(
        convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, src, wei, dst,
                                  d.strides, d.pad, d.pad), eng());
    auto bwd_data = convolution_backward_data::primitive_desc(
        convolution_backward_data::desc(algorithm::convolution_direct, src, wei, dst, d.strides, d.pad, d.pad),
        eng(), fwd);
    auto bwd_weights = convolution_backward_weights::primitive_desc(
        convolution_backward_weights::desc(algorithm::convolution_direct, src, wei, dst, d.strides, d.pad, d.pad),
        eng(), fwd);
    Plan plan{fwd, bwd_data, bwd_weights, convolution_forward(fwd), convolution_backward_data(bwd_data),
              convolution_backward_weights(bwd_weights)};
    return plans.emplace(key, plan).first->second;
}

// A plain array as the layout `want`: the array itself, or a reordered copy.
inline memory as_layout(const memory::desc& want, memory plain, stream& st) {
    if (want == plain.get_desc()) return plain;
    memory m(want, eng());
    reorder(plain, m).execute(st, plain, m);
    return m;
}

// Run `prim` writing into the plain array `out` through the layout `want`.
template <typename Run>
inline void into_plain(const memory::desc& want, memory out, stream& st, Run run) {
    if (want == out.get_desc()) {
        run(out);
        return;
    }
    memory m(want, eng());
    run(m);
    reorder(m, out).execute(st, m, out);
}

}  // namespace cten_conv

// The forward with the weights `ws` already in the primitive's layout.
inline void cten_conv_forward_with(cten_conv::Plan& p, const float* x, dnnl::memory ws, float* y, const int* s,
                                   dnnl::stream& st) {
    using namespace cten_conv;
    Dims d = dims_of(s);
    auto f32 = memory::data_type::f32;
    memory xs = as_layout(p.fwd.src_desc(), memory({d.src, f32, d.act}, eng(), const_cast<float*>(x)), st);
    into_plain(p.fwd.dst_desc(), memory({d.dst, f32, d.act}, eng(), y), st, [&](memory& ys) {
        p.fwd_prim.execute(st, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, ws}, {DNNL_ARG_DST, ys}});
    });
    st.wait();
}

inline void cten_conv_forward(const float* x, const float* w, float* y, const int* s) {
    using namespace cten_conv;
    Plan& p = plan_for(s);
    Dims d = dims_of(s);
    stream st(eng());
    memory ws = as_layout(p.fwd.weights_desc(),
                          memory({d.wei, memory::data_type::f32, d.wtag}, eng(), const_cast<float*>(w)), st);
    cten_conv_forward_with(p, x, ws, y, s, st);
}

// The plain weights in the layout the forward primitive wants, into `out`
// (capacity `out_floats`; the blocked layouts pad channels to their blocks).
inline void cten_conv_weights_blocked(const float* w, float* out, long long out_floats, const int* s) {
    using namespace cten_conv;
    Plan& p = plan_for(s);
    Dims d = dims_of(s);
    auto want = p.fwd.weights_desc();
    if (want.get_size() > (size_t)out_floats * sizeof(float))
        throw std::runtime_error("cten_conv_weights_blocked: the blocked weights need " +
                                 std::to_string(want.get_size()) + " bytes, the buffer has " +
                                 std::to_string(out_floats * sizeof(float)));
    stream st(eng());
    auto f32 = memory::data_type::f32;
    memory plain({d.wei, f32, d.wtag}, eng(), const_cast<float*>(w));
    memory blocked(want, eng(), out);
    reorder(plain, blocked).execute(st, plain, blocked);
    st.wait();
}

// The forward with weights already in the primitive's layout (cten_conv_weights_blocked).
inline void cten_conv_forward_blocked(const float* x, const float* wb, float* y, const int* s) {
    using namespace cten_conv;
    Plan& p = plan_for(s);
    stream st(eng());
    cten_conv_forward_with(p, x, memory(p.fwd.weights_desc(), eng(), const_cast<float*>(wb)), y, s, st);
}

inline void cten_conv_backward_data(const float* dy, const float* w, float* dx, const int* s) {
    using namespace cten_conv;
    Plan& p = plan_for(s);
    Dims d = dims_of(s);
    stream st(eng());
    auto f32 = memory::data_type::f32;
    memory dys = as_layout(p.bwd_data.diff_dst_desc(), memory({d.dst, f32, d.act}, eng(), const_cast<float*>(dy)), st);
    memory ws = as_layout(p.bwd_data.weights_desc(), memory({d.wei, f32, d.wtag}, eng(), const_cast<float*>(w)), st);
    into_plain(p.bwd_data.diff_src_desc(), memory({d.src, f32, d.act}, eng(), dx), st, [&](memory& dxs) {
        p.bwd_data_prim.execute(st, {{DNNL_ARG_DIFF_DST, dys}, {DNNL_ARG_WEIGHTS, ws}, {DNNL_ARG_DIFF_SRC, dxs}});
    });
    st.wait();
}

inline void cten_conv_backward_weights(const float* x, const float* dy, float* dw, const int* s) {
    using namespace cten_conv;
    Plan& p = plan_for(s);
    Dims d = dims_of(s);
    stream st(eng());
    auto f32 = memory::data_type::f32;
    memory xs = as_layout(p.bwd_weights.src_desc(), memory({d.src, f32, d.act}, eng(), const_cast<float*>(x)), st);
    memory dys = as_layout(p.bwd_weights.diff_dst_desc(), memory({d.dst, f32, d.act}, eng(), const_cast<float*>(dy)), st);
    into_plain(p.bwd_weights.diff_weights_desc(), memory({d.wei, f32, d.wtag}, eng(), dw), st, [&](memory& dws) {
        p.bwd_weights_prim.execute(st, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_DIFF_DST, dys}, {DNNL_ARG_DIFF_WEIGHTS, dws}});
    });
    st.wait();
}
