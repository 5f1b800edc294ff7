// The frozen 3D ResNet's eval-mode forward as one oneDNN program (CPU).
//
// cten_jt/kernels/frozen_resnet.py folds every eval-mode BatchNorm into the
// convolution before it (weights scaled per output channel, a bias added) and
// writes the network as a list of instructions; this file runs them:
//   * activations stay in oneDNN's blocked layout (nCdhw16c) from the first
//     convolution to the last, in the precision they are computed in (float32,
//     or bfloat16 with float32 accumulation), instead of a reorder into and out
//     of the plain layout around every convolution;
//   * ReLU and the residual sum are the convolutions' post-ops (sum, then
//     eltwise_relu): a block's last convolution adds its result into the
//     shortcut's buffer in place;
//   * the weights come blocked once (cten_frozen_pack) and are used as they are.
// The plain float32 input is read once, the plain float32 output written once.
//
// Program (int32): row 0 the header, then one row of WIDTH ints per instruction.
//   header: [0] instructions, [1] prec (0 float32, 1 bfloat16), [2] output slot,
//           [3] slots, [4..8] output dims n, c, d, h, w
//   CONV:    [1] src slot, [2] dst slot, [3] sum into dst, [4] relu,
//            [5] plain weight offset, [6] blocked weight offset, [7] bias offset,
//            [8..26] the sizes s[19] of csrc/conv_dnnl.h (3D), [27] blocked capacity (floats),
//            [28] K: temporal taps moved into channels (0: none), [29] their padding,
//            [30] samples per call (with K), [31] the output in float32 (a bfloat16
//            program's shortcut and block outputs)
//   MAXPOOL: [1] src slot, [2] dst slot,
//            [8..24] n, c, d, h, w, kd, kh, kw, sd, sh, sw, pd, ph, pw, od, oh, ow
//   FREE:    [1] slot (its buffer is released)
//   CAST:    [1] src slot, [2] dst slot, [3] 1: to float32, 0: to the program's precision
// In bfloat16 the program rounds where autocast does, or less: every
// convolution's operands are bfloat16 and it accumulates in float32; the
// activations inside a block are bfloat16 (what the next convolution would
// round them to), the shortcut and the residual sum float32.
// Slot 0 is the input.  Offsets count floats; a bfloat16 blocked weight takes
// half its floats' bytes.
//
// Temporal taps into channels (K > 0, the first convolution: 3 channels, 7x7x7,
// temporal stride 1): oneDNN's kernels for 3 input channels reach a quarter of
// the machine's rate.  The same sum is a convolution of K*C channels with a
// 1xkHxkW kernel over the input stacked K times, shifted by one frame each:
//   x'[n, c*K + k, t] = x[n, c, t + k - pad] (0 outside), weights [O, C*K, 1, kH, kW]
// (a reshape of [O, C, K, kH, kW]); it runs `chunk` samples at a time so that
// the stacked copy stays small.  The sizes s describe that convolution.
#pragma once
#include <dnnl.hpp>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace cten_frozen {

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

enum { OP_CONV = 1, OP_MAXPOOL = 2, OP_FREE = 3, OP_CAST = 4 };
constexpr int WIDTH = 32;

inline engine& eng() {
    static engine e(engine::kind::cpu, 0);
    return e;
}

// An activation's layout: blocked by 16 channels where the channels divide, else plain.
inline memory::desc act_desc(const memory::dims& dims, dt type, bool plain) {
    return memory::desc(dims, type, plain || dims[1] < 16 ? tag::ncdhw : tag::nCdhw16c);
}

struct ConvStep {
    convolution_forward::primitive_desc pd;
    convolution_forward prim;
};

struct PoolStep {
    pooling_forward::primitive_desc pd;
    pooling_forward prim;
};

inline memory::dims src_dims(const int* s) { return {s[1], s[2], s[3], s[4], s[5]}; }
inline memory::dims dst_dims(const int* s) { return {s[1], s[6], s[16], s[17], s[18]}; }

// The fused convolution of one shape (made once): conv + bias [+ sum into dst] [+ relu].
inline ConvStep& conv_step(const int* s, int prec, bool sum, bool relu, bool dst_f32) {
    static std::map<std::vector<int>, ConvStep> steps;
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    std::vector<int> key(s, s + 19);
    key.insert(key.end(), {prec, (int)sum, (int)relu, (int)dst_f32});
    auto it = steps.find(key);
    if (it != steps.end()) return it->second;
    dt type = prec ? dt::bf16 : dt::f32;
    memory::desc src = act_desc(src_dims(s), type, false);
    memory::desc dst = act_desc(dst_dims(s), dst_f32 ? dt::f32 : type, false);
    memory::desc wei({s[6], s[2], s[7], s[8], s[9]}, type, tag::any), bias({s[6]}, dt::f32, tag::x);
    post_ops ops;
    if (sum) ops.append_sum(1.f);
    if (relu) ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
    primitive_attr attr;
    attr.set_post_ops(ops);
    auto pd = convolution_forward::primitive_desc(
        convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, src, wei, bias, dst,
                                  {s[10], s[11], s[12]}, {s[13], s[14], s[15]}, {s[13], s[14], s[15]}),
        attr, eng());
    return steps.emplace(key, ConvStep{pd, convolution_forward(pd)}).first->second;
}

inline PoolStep& pool_step(const int* p, int prec, const memory::desc& src) {
    static std::map<std::vector<int>, PoolStep> steps;
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    std::vector<int> key(p, p + 17);
    key.push_back(prec);
    auto it = steps.find(key);
    if (it != steps.end()) return it->second;
    dt type = prec ? dt::bf16 : dt::f32;
    memory::desc dst = act_desc({p[0], p[1], p[14], p[15], p[16]}, type, false);
    auto pd = pooling_forward::primitive_desc(
        pooling_forward::desc(prop_kind::forward_inference, algorithm::pooling_max, src, dst, {p[8], p[9], p[10]},
                              {p[5], p[6], p[7]}, {p[11], p[12], p[13]}, {p[11], p[12], p[13]}),
        eng());
    return steps.emplace(key, PoolStep{pd, pooling_forward(pd)}).first->second;
}

// The plain float32 input as an activation (blocked where its channels divide, in `type`).
inline memory as_activation(memory input, dt type, stream& st) {
    memory::desc want = act_desc(input.get_desc().dims(), type, false);
    if (want == input.get_desc()) return input;
    memory m(want, eng());
    reorder(input, m).execute(st, input, m);
    return m;
}

// The sizes a convolution instruction's primitive is made for (with K: `chunk` samples a call).
inline std::vector<int> step_sizes(const int* ins) {
    std::vector<int> s(ins + 8, ins + 27);
    if (ins[28] > 0) s[1] = ins[30];
    return s;
}

// The first convolution with its temporal taps as channels (K = ins[28]), into `dst`.
inline void run_taps_as_channels(const int* ins, int prec, const float* x, const memory& w, const memory& b,
                                 memory& dst, stream& st) {
    const int* s = ins + 8;
    std::vector<int> sc = step_sizes(ins);
    int K = ins[28], pad = ins[29], chunk = ins[30];
    int N = s[1], C = s[2] / K, D = s[3];
    size_t plane = (size_t)s[4] * s[5];
    ConvStep& c = conv_step(sc.data(), prec, ins[3], ins[4], ins[31]);
    memory stacked({{chunk, s[2], D, s[4], s[5]}, dt::f32, tag::ncdhw}, eng());
    memory src(c.pd.src_desc(), eng());
    size_t per_sample = dst.get_desc().get_size() / N;
    float* xs = static_cast<float*>(stacked.get_data_handle());
    for (int n0 = 0; n0 < N; n0 += chunk) {
        for (int i = 0; i < chunk; i++)
            for (int ch = 0; ch < C; ch++)
                for (int k = 0; k < K; k++)
                    for (int t = 0; t < D; t++) {
                        float* to = xs + (((size_t)i * C * K + ch * K + k) * D + t) * plane;
                        int from = t + k - pad;
                        if (from < 0 || from >= D)
                            std::memset(to, 0, plane * sizeof(float));
                        else
                            std::memcpy(to, x + (((size_t)(n0 + i) * C + ch) * D + from) * plane,
                                        plane * sizeof(float));
                    }
        reorder(stacked, src).execute(st, stacked, src);
        memory part(c.pd.dst_desc(), eng(), static_cast<char*>(dst.get_data_handle()) + n0 * per_sample);
        c.prim.execute(st, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, part}});
        st.wait();
    }
}

}  // namespace cten_frozen

// 1 where this CPU's oneDNN has a bfloat16 convolution with these post-ops (AVX-512 and up).
inline int cten_frozen_native_bf16() {
    using namespace cten_frozen;
    static const int s[19] = {3, 1, 16, 1, 8, 8, 16, 1, 3, 3, 1, 1, 1, 0, 1, 1, 1, 8, 8};
    try {
        conv_step(s, 1, false, true, false);     // inside a block
        conv_step(s, 1, true, true, true);       // a block's last: float32 shortcut
        return 1;
    } catch (const dnnl::error&) {
        return 0;
    }
}

// The plain (oidhw, float32) folded weights into the layout and data type each
// convolution's primitive wants, at its blocked offset.
inline void cten_frozen_pack(const float* plain, float* packed, const int* prog) {
    using namespace cten_frozen;
    int n = prog[0], prec = prog[1];
    stream st(eng());
    for (int k = 1; k <= n; k++) {
        const int* ins = prog + WIDTH * k;
        if (ins[0] != OP_CONV) continue;
        const int* s = ins + 8;
        ConvStep& c = conv_step(step_sizes(ins).data(), prec, ins[3], ins[4], ins[31]);
        auto want = c.pd.weights_desc();
        if (want.get_size() > (size_t)ins[27] * sizeof(float))
            throw std::runtime_error("cten_frozen_pack: instruction " + std::to_string(k) + " needs " +
                                     std::to_string(want.get_size()) + " bytes for its weights, has " +
                                     std::to_string((size_t)ins[27] * sizeof(float)));
        memory src({{s[6], s[2], s[7], s[8], s[9]}, dt::f32, tag::oidhw}, eng(), const_cast<float*>(plain + ins[5]));
        memory dst(want, eng(), packed + ins[6]);
        reorder(src, dst).execute(st, src, dst);
    }
    st.wait();
}

// Run the program on the plain float32 input x; the plain float32 result into out.
inline void cten_frozen_run(const float* x, const float* packed, const float* bias, const int* prog, float* out) {
    using namespace cten_frozen;
    int n = prog[0], prec = prog[1];
    dt type = prec ? dt::bf16 : dt::f32;
    std::vector<memory> slots(prog[3]);
    stream st(eng());
    const int* first = prog + WIDTH + 8;
    memory input(act_desc(src_dims(first), dt::f32, true), eng(), const_cast<float*>(x));
    if (prog[WIDTH + 28] == 0) slots[0] = as_activation(input, type, st);   // else read as it is
    for (int k = 1; k <= n; k++) {
        const int* ins = prog + WIDTH * k;
        if (ins[0] == OP_CONV && ins[28] > 0) {
            const int* s = ins + 8;
            ConvStep& c = conv_step(step_sizes(ins).data(), prec, ins[3], ins[4], ins[31]);
            if (ins[1] != 0 || ins[3])
                throw std::runtime_error("cten_frozen_run: instruction " + std::to_string(k) +
                                         ": taps as channels apply to the first convolution only");
            slots[ins[2]] = memory(act_desc(dst_dims(s), ins[31] ? dt::f32 : type, false), eng());
            memory w(c.pd.weights_desc(), eng(), const_cast<float*>(packed + ins[6]));
            memory b({{s[6]}, dt::f32, tag::x}, eng(), const_cast<float*>(bias + ins[7]));
            run_taps_as_channels(ins, prec, x, w, b, slots[ins[2]], st);
        } else if (ins[0] == OP_CONV) {
            const int* s = ins + 8;
            memory& src = slots[ins[1]];
            ConvStep& c = conv_step(s, prec, ins[3], ins[4], ins[31]);
            if (!(c.pd.src_desc() == src.get_desc()))
                throw std::runtime_error("cten_frozen_run: instruction " + std::to_string(k) +
                                         ": the input's layout is not the convolution's");
            if (ins[3]) {
                if (!(c.pd.dst_desc() == slots[ins[2]].get_desc()))
                    throw std::runtime_error("cten_frozen_run: instruction " + std::to_string(k) +
                                             ": the shortcut's layout is not the convolution's output's");
            } else {
                slots[ins[2]] = memory(c.pd.dst_desc(), eng());
            }
            memory w(c.pd.weights_desc(), eng(), const_cast<float*>(packed + ins[6]));
            memory b({{s[6]}, dt::f32, tag::x}, eng(), const_cast<float*>(bias + ins[7]));
            c.prim.execute(st, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b},
                                {DNNL_ARG_DST, slots[ins[2]]}});
        } else if (ins[0] == OP_MAXPOOL) {
            memory& src = slots[ins[1]];
            PoolStep& p = pool_step(ins + 8, prec, src.get_desc());
            slots[ins[2]] = memory(p.pd.dst_desc(), eng());
            p.prim.execute(st, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, slots[ins[2]]}});
        } else if (ins[0] == OP_CAST) {
            memory& src = slots[ins[1]];
            slots[ins[2]] = memory(act_desc(src.get_desc().dims(), ins[3] ? dt::f32 : type, false), eng());
            reorder(src, slots[ins[2]]).execute(st, src, slots[ins[2]]);
        } else if (ins[0] == OP_FREE) {
            st.wait();
            slots[ins[1]] = memory();
        } else {
            throw std::runtime_error("cten_frozen_run: unknown instruction " + std::to_string(ins[0]));
        }
    }
    memory result(act_desc({prog[4], prog[5], prog[6], prog[7], prog[8]}, dt::f32, true), eng(), out);
    reorder(slots[prog[2]], result).execute(st, slots[prog[2]], result);
    st.wait();
}
