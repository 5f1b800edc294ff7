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
//
// Precision `prec` (cten_jt.precision): 0 float32; 1 bfloat16, the policy of
// torch.autocast: every operand (input, weights, output gradient) rounded to
// bfloat16, products accumulated in float32, every result (output, input and
// weight gradients) rounded to bfloat16.  The arrays around the call stay
// float32: the reorders into and out of oneDNN's layouts do the conversions.
// Where oneDNN has no bfloat16 convolution (a CPU below AVX-512, e.g. under
// ONEDNN_MAX_CPU_ISA=AVX2) the float32 primitives run on operands and results
// rounded to bfloat16 values: the same arithmetic (a product of two bfloat16
// values is exact in float32), at float32 speed (Plan::emulated).
#pragma once
#include "rounding.h"
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
    bool emulated;      // bfloat16 asked for, float32 primitives on rounded values
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

inline Plan build_plan(const int* s, memory::data_type dt) {
    Dims d = dims_of(s);
    memory::desc src(d.src, dt, tag::any), wei(d.wei, dt, tag::any), dst(d.dst, dt, tag::any);
    auto fwd = convolution_forward::primitive_desc(
        convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, src, wei, dst,
                                  d.strides, d.pad, d.pad), eng());
    auto bwd_data = convolution_backward_data::primitive_desc(
        convolution_backward_data::desc(algorithm::convolution_direct, src, wei, dst, d.strides, d.pad, d.pad),
        eng(), fwd);
    auto bwd_weights = convolution_backward_weights::primitive_desc(
        convolution_backward_weights::desc(algorithm::convolution_direct, src, wei, dst, d.strides, d.pad, d.pad),
        eng(), fwd);
    return Plan{fwd, bwd_data, bwd_weights, convolution_forward(fwd), convolution_backward_data(bwd_data),
                convolution_backward_weights(bwd_weights), false};
}

// The primitives of one shape and precision, made once.
inline Plan& plan_for(const int* s, int prec) {
    static std::map<std::vector<int>, Plan> plans;
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    std::vector<int> key(s, s + 19);
    key.push_back(prec);
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    if (prec == 0) return plans.emplace(key, build_plan(s, memory::data_type::f32)).first->second;
    try {
        return plans.emplace(key, build_plan(s, memory::data_type::bf16)).first->second;
    } catch (const dnnl::error&) {          // no bfloat16 convolution on this CPU (or ISA limit)
        Plan plan = build_plan(s, memory::data_type::f32);
        plan.emulated = true;
        return plans.emplace(key, plan).first->second;
    }
}

// 1 where this CPU's oneDNN runs bfloat16 convolutions, 0 where they are emulated.
inline int cten_conv_native_bf16() {
    static const int s[19] = {2, 1, 16, 1, 8, 8, 16, 1, 3, 3, 1, 1, 1, 0, 1, 1, 1, 8, 8};
    return plan_for(s, 1).emulated ? 0 : 1;
}

// The element count of a memory's buffer (float32 here: the emulated path).
inline long long floats_in(const memory& m) { return (long long)(m.get_desc().get_size() / sizeof(float)); }

// A plain array as the layout `want`: the array itself, or a reordered copy;
// `round`: a copy rounded to bfloat16 values (the emulated path).
inline memory as_layout(const memory::desc& want, memory plain, stream& st, bool round = false) {
    if (want == plain.get_desc() && !round) return plain;
    memory m(want, eng());
    reorder(plain, m).execute(st, plain, m);
    if (round) {
        st.wait();
        cten_round_bf16_n(static_cast<float*>(m.get_data_handle()), floats_in(m));
    }
    return m;
}

// Run `prim` writing into the plain array `out` through the layout `want`;
// `round`: the result rounded to bfloat16 values (the emulated path).
template <typename Run>
inline void into_plain(const memory::desc& want, memory out, stream& st, Run run, bool round = false) {
    if (want == out.get_desc()) {
        run(out);
        if (round) {
            st.wait();
            cten_round_bf16_n(static_cast<float*>(out.get_data_handle()), floats_in(out));
        }
        return;
    }
    memory m(want, eng());
    run(m);
    if (round) {
        st.wait();
        cten_round_bf16_n(static_cast<float*>(m.get_data_handle()), floats_in(m));
    }
    reorder(m, out).execute(st, m, out);
}

}  // namespace cten_conv

// The forward with the weights `ws` already in the primitive's layout.
inline void cten_conv_forward_with(cten_conv::Plan& p, const float* x, dnnl::memory ws, float* y, const int* s,
                                   dnnl::stream& st) {
    using namespace cten_conv;
    Dims d = dims_of(s);
    auto f32 = memory::data_type::f32;
    memory xs = as_layout(p.fwd.src_desc(), memory({d.src, f32, d.act}, eng(), const_cast<float*>(x)), st,
                          p.emulated);
    into_plain(p.fwd.dst_desc(), memory({d.dst, f32, d.act}, eng(), y), st, [&](memory& ys) {
        p.fwd_prim.execute(st, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_WEIGHTS, ws}, {DNNL_ARG_DST, ys}});
    }, p.emulated);
    st.wait();
}

inline void cten_conv_forward(const float* x, const float* w, float* y, const int* s, int prec) {
    using namespace cten_conv;
    Plan& p = plan_for(s, prec);
    Dims d = dims_of(s);
    stream st(eng());
    memory ws = as_layout(p.fwd.weights_desc(),
                          memory({d.wei, memory::data_type::f32, d.wtag}, eng(), const_cast<float*>(w)), st,
                          p.emulated);
    cten_conv_forward_with(p, x, ws, y, s, st);
}

// The plain weights in the layout (and data type) the forward primitive wants,
// into `out` (capacity `out_floats` floats; the blocked layouts pad channels to
// their blocks; bfloat16 weights take half the bytes).
inline void cten_conv_weights_blocked(const float* w, float* out, long long out_floats, const int* s, int prec) {
    using namespace cten_conv;
    Plan& p = plan_for(s, prec);
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
    if (p.emulated) cten_round_bf16_n(out, floats_in(blocked));
}

// The forward with weights already in the primitive's layout (cten_conv_weights_blocked).
inline void cten_conv_forward_blocked(const float* x, const float* wb, float* y, const int* s, int prec) {
    using namespace cten_conv;
    Plan& p = plan_for(s, prec);
    stream st(eng());
    cten_conv_forward_with(p, x, memory(p.fwd.weights_desc(), eng(), const_cast<float*>(wb)), y, s, st);
}

inline void cten_conv_backward_data(const float* dy, const float* w, float* dx, const int* s, int prec) {
    using namespace cten_conv;
    Plan& p = plan_for(s, prec);
    Dims d = dims_of(s);
    stream st(eng());
    auto f32 = memory::data_type::f32;
    bool r = p.emulated;
    memory dys = as_layout(p.bwd_data.diff_dst_desc(), memory({d.dst, f32, d.act}, eng(), const_cast<float*>(dy)),
                           st, r);
    memory ws = as_layout(p.bwd_data.weights_desc(), memory({d.wei, f32, d.wtag}, eng(), const_cast<float*>(w)),
                          st, r);
    into_plain(p.bwd_data.diff_src_desc(), memory({d.src, f32, d.act}, eng(), dx), st, [&](memory& dxs) {
        p.bwd_data_prim.execute(st, {{DNNL_ARG_DIFF_DST, dys}, {DNNL_ARG_WEIGHTS, ws}, {DNNL_ARG_DIFF_SRC, dxs}});
    }, r);
    st.wait();
}

inline void cten_conv_backward_weights(const float* x, const float* dy, float* dw, const int* s, int prec) {
    using namespace cten_conv;
    Plan& p = plan_for(s, prec);
    Dims d = dims_of(s);
    stream st(eng());
    auto f32 = memory::data_type::f32;
    bool r = p.emulated;
    memory xs = as_layout(p.bwd_weights.src_desc(), memory({d.src, f32, d.act}, eng(), const_cast<float*>(x)),
                          st, r);
    memory dys = as_layout(p.bwd_weights.diff_dst_desc(),
                           memory({d.dst, f32, d.act}, eng(), const_cast<float*>(dy)), st, r);
    into_plain(p.bwd_weights.diff_weights_desc(), memory({d.wei, f32, d.wtag}, eng(), dw), st, [&](memory& dws) {
        p.bwd_weights_prim.execute(st, {{DNNL_ARG_SRC, xs}, {DNNL_ARG_DIFF_DST, dys}, {DNNL_ARG_DIFF_WEIGHTS, dws}});
    }, r);
    st.wait();
}
