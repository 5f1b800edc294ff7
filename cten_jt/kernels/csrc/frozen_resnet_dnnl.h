// The frozen 3D ResNet's forward as one oneDNN program (CPU), eval or train mode.
//
// cten_jt/kernels/frozen_resnet.py writes the network as a list of instructions; this
// file runs them, reading the convolutions' and BatchNorms' own arrays at each call.
// An eval-mode BatchNorm is folded into the convolution before it as the convolution
// runs (weights scaled per output channel, a bias added: fold_channel, the arithmetic of
// frozen_resnet.fold); a train-mode one is CONV_TRAIN's below:
//   * activations stay in one layout from the first convolution to the last: the one oneDNN
//     chooses on this CPU (nCdhw16c on AVX-512's jit kernels, nCdhw8c on AVX2, ndhwc where
//     its brgemm kernels run channels last) or one forced (the program's header [10]), in
//     the precision they are computed in (float32, or bfloat16 with float32 accumulation),
//     instead of a reorder into and out of the plain layout around every convolution;
//   * ReLU and the residual sum are the convolutions' post-ops (sum, then
//     eltwise_relu; in train mode part of the BatchNorm's last pass): a
//     block's last convolution adds its result into the shortcut's buffer in
//     place;
//   * a strided 1x1x1 convolution (a downsampling shortcut) runs on the stride-1 1x1
//     kernel over a subsampled copy of its input (subsampled, conv_input);
//   * the activations and the call's other buffers are placed in one arena that the caller
//     keeps between calls (Buffers: planned from the first call's allocations, which it
//     records): glibc maps blocks above 32 MB afresh at each allocation, and at the paper's
//     shape the stem's and layer 1's faulted in ~110 (eval) to ~170 (train) thousand 4 KB
//     pages a call;
//   * each convolution's weights are folded (eval mode) and reordered into the layout its
//     primitive wants as it runs, from its own array: the program keeps no copy of the
//     backbone's weights (one layer's at a time; ~2-4 % of a forward).
// The plain float32 input is read once, the plain float32 output written once.
//
// Program (int32): row 0 the header, then one row of WIDTH ints per instruction.
//   header: [0] instructions, [1] prec (0 float32, 1 bfloat16), [2] output slot,
//           [3] slots, [4..8] output dims n, c, d, h, w, [9] BatchNorm channels,
//           [10] the activations' layout (LAYOUT_*: 16, 8 or 1)
//   CONV:    [1] src slot, [2] dst slot, [3] sum into dst, [4] relu,
//            [5], [6] unused, [7] the offset of its BatchNorm's channels in the
//            BatchNorms' concatenated arrays, [8..26] the sizes s[19] of csrc/conv_dnnl.h
//            (3D), [27] unused, [28] K: temporal taps moved into channels (0: none),
//            [29] their padding, [30] samples per call (with K), [31] the output in
//            float32 (a bfloat16 program's shortcut and block outputs), [32] the weight's
//            own temporal taps and [33] the first one used (weight_source), [34] unused
//   MAXPOOL: [1] src slot, [2] dst slot,
//            [8..24] n, c, d, h, w, kd, kh, kw, sd, sh, sw, pd, ph, pw, od, oh, ow
//   FREE:    [1] slot (its buffer is released)
//   CAST:    [1] src slot, [2] dst slot, [3] 1: to float32, 0: to the program's precision
//   CONV_TRAIN: a CONV row whose BatchNorm is in train mode (cten_frozen_run_train): the
//            convolution without post-ops into a buffer of the program's precision, then
//            its BatchNorm with the batch's statistics, [+ dst] [relu] into dst
// Train mode (header [9]: the BatchNorms' channels in all): the statistics are those of
// cten_jt/kernels/batchnorm.py (csrc/bn_stats_cpu.h): per channel a double mean and
// centred variance in two passes, summed in the same order (samples, then positions),
// then x * alpha + beta in float32; the running averages come back for the caller.
// In bfloat16 the program rounds where autocast does, or less: every
// convolution's operands are bfloat16 and it accumulates in float32; the
// activations inside a block are bfloat16 (what the next convolution would
// round them to), the shortcut and the residual sum float32.
// Slot 0 is the input.
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
#include <cstdint>
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "bn_stats_cpu.h"

namespace cten_frozen {

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

enum { OP_CONV = 1, OP_MAXPOOL = 2, OP_FREE = 3, OP_CAST = 4, OP_CONV_TRAIN = 5 };
constexpr int WIDTH = 35;

inline engine& eng() {
    static engine e(engine::kind::cpu, 0);
    return e;
}

// The activations' layouts: channels in blocks of 16 or 8 (nCdhw16c, nCdhw8c), or last (ndhwc).
enum { LAYOUT_NONE = 0, LAYOUT_CHANNELS_LAST = 1, LAYOUT_BLOCK8 = 8, LAYOUT_BLOCK16 = 16 };

// The layout of a convolution's output as oneDNN chose it (LAYOUT_NONE: another one).
inline int layout_of(const memory::desc& md) {
    const dnnl_memory_desc_t& d = md.data;
    const auto& b = d.format_desc.blocking;
    if (d.format_kind != dnnl_blocked) return LAYOUT_NONE;
    if (b.inner_nblks == 1 && b.inner_idxs[0] == 1 && (b.inner_blks[0] == 8 || b.inner_blks[0] == 16))
        return (int)b.inner_blks[0];
    if (b.inner_nblks == 0 && d.ndims == 5 && b.strides[1] == 1 && b.strides[4] == d.dims[1] &&
        b.strides[3] == d.dims[1] * d.dims[4] && b.strides[2] == b.strides[3] * d.dims[3])
        return LAYOUT_CHANNELS_LAST;
    return LAYOUT_NONE;
}

// The layout oneDNN chooses on this CPU for activations of `type`, as its choice for a
// convolution of 64 channels shows (format `any`): the one it chooses for training first,
// else for inference.  On an AVX-512 EPYC (Zen 4, Zen 5) oneDNN 2.6 chooses nCdhw16c (its
// jit kernels) for training and channels last (its brgemm kernels) for inference; there
// the program in nCdhw16c took 0.99 (eval, fp32), 0.91 (eval, bf16), 0.88 (train, fp32)
// and 0.83 (train, bf16) of its time in channels last at the paper's shape (Zen 5, 5
// paired rounds; benchmarks/results/frozen_backbone_layouts_avx512.md).  Where training
// too goes channels last (AMX's brgemm kernels), so does the program.  LAYOUT_NONE where
// neither is one of ours (the program is not used: another layout would run oneDNN's
// reference kernels, orders of magnitude slower).
inline int chosen_layout(dt type) {
    static std::map<int, int> found;
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    auto it = found.find((int)type);
    if (it != found.end()) return it->second;
    int layout = LAYOUT_NONE;
    for (prop_kind kind : {prop_kind::forward_training, prop_kind::forward_inference}) {
        try {
            memory::desc src({2, 64, 4, 8, 8}, type, tag::any), dst({2, 64, 4, 8, 8}, type, tag::any);
            memory::desc wei({64, 64, 3, 3, 3}, type, tag::any);
            auto pd = convolution_forward::primitive_desc(
                convolution_forward::desc(kind, algorithm::convolution_direct, src, wei, dst, {1, 1, 1},
                                          {1, 1, 1}, {1, 1, 1}),
                eng());
            layout = layout_of(pd.dst_desc());
        } catch (const dnnl::error&) {
            layout = LAYOUT_NONE;
        }
        if (layout != LAYOUT_NONE) break;
    }
    return found.emplace((int)type, layout).first->second;
}

inline bool known_layout(int layout) {
    return layout == LAYOUT_CHANNELS_LAST || layout == LAYOUT_BLOCK8 || layout == LAYOUT_BLOCK16;
}

// An activation in `layout`: channels last; or blocked where its channels reach a block,
// else plain.  `plain`: the plain layout (the program's input and output).
inline memory::desc act_desc(const memory::dims& dims, dt type, int layout, bool plain = false) {
    if (plain) return memory::desc(dims, type, tag::ncdhw);
    if (layout == LAYOUT_CHANNELS_LAST) return memory::desc(dims, type, tag::ndhwc);
    if (!known_layout(layout) || dims[1] < layout) return memory::desc(dims, type, tag::ncdhw);
    return memory::desc(dims, type, layout == LAYOUT_BLOCK16 ? tag::nCdhw16c : tag::nCdhw8c);
}

// The channels a memory position holds contiguously in `layout` for C channels (the unit a
// copy moves): the block, all C where channels are last, 1 where plain.
inline long channel_run(int layout, long C) {
    if (layout == LAYOUT_CHANNELS_LAST) return C;
    return (known_layout(layout) && C >= layout) ? layout : 1;
}

// An activation: a oneDNN memory, on bytes of its own (oneDNN's allocation) or of the
// arena (Buffers::get); `owner` tells Buffers when the last copy goes.
struct Buffer {
    memory m;
    std::shared_ptr<void> owner;
};

// Where one call's buffers come from (the activations, the subsampled and the stacked copies).
//
// Recording (no plan yet): each is oneDNN's own allocation, and the call records when each
// is made and when its last copy goes, on one clock; plan() then places them in one arena
// (first fit, largest first, 4 KB aligned; two buffers share bytes only where their
// lifetimes do not meet).  Planned: the caller passes that plan and an arena of its total
// size, kept between calls, and the k-th buffer of the call is the arena at the k-th
// offset: a program makes the same buffers in the same order at every call (its
// instructions decide them), so the k-th is the recorded k-th; one of another size (which
// the program never makes) gets an allocation of its own instead.
// Plan layout (int64): [0] buffers (-1: more than fit), [1] the arena's bytes, then
// (size, offset) per buffer.
class Buffers {
  public:
    static constexpr size_t ALIGN = 4096;
    Buffers(const int64_t* plan, char* arena)
        : plan_(plan), arena_(reinterpret_cast<char*>(((uintptr_t)arena + ALIGN - 1) / ALIGN * ALIGN)) {}

    Buffer get(const memory::desc& d) {
        size_t size = d.get_size();
        long k = made_++;
        if (plan_) {
            if (k < plan_[0] && (size_t)plan_[2 + 2 * k] == size)
                return Buffer{memory(d, eng(), arena_ + plan_[3 + 2 * k]), nullptr};
            return Buffer{memory(d, eng()), nullptr};
        }
        events_.push_back({size, clock_++, -1});
        auto gone = [this, k](void*) { events_[k].died = clock_++; };
        return Buffer{memory(d, eng()), std::shared_ptr<void>(nullptr, gone)};
    }

    // The plan of a recorded call (every Buffer gone) into out[capacity].
    void plan(int64_t* out, long capacity) const {
        long n = (long)events_.size();
        if (2 + 2 * n > capacity) {
            out[0] = -1, out[1] = 0;
            return;
        }
        std::vector<long> order(n);
        for (long i = 0; i < n; i++) order[i] = i;
        std::stable_sort(order.begin(), order.end(),
                         [&](long a, long b) { return events_[a].size > events_[b].size; });
        std::vector<size_t> at(n, 0);
        std::vector<bool> placed(n, false);
        size_t total = 0;
        for (long i : order) {
            std::vector<std::pair<size_t, size_t>> taken;     // [start, end) of live neighbours
            for (long j = 0; j < n; j++)
                if (placed[j] && meet(events_[i], events_[j])) taken.push_back({at[j], at[j] + round(events_[j].size)});
            std::sort(taken.begin(), taken.end());
            size_t start = 0;
            for (auto& t : taken) {
                if (t.first >= start + round(events_[i].size)) break;
                start = std::max(start, t.second);
            }
            at[i] = start, placed[i] = true;
            total = std::max(total, start + round(events_[i].size));
        }
        out[0] = n, out[1] = (int64_t)total;
        for (long i = 0; i < n; i++) out[2 + 2 * i] = (int64_t)events_[i].size, out[3 + 2 * i] = (int64_t)at[i];
    }

  private:
    struct Event {
        size_t size;
        long born, died;            // died -1: still alive (counts as alive to the end)
    };
    static size_t round(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }
    static bool meet(const Event& a, const Event& b) {
        long a_end = a.died < 0 ? LONG_MAX : a.died, b_end = b.died < 0 ? LONG_MAX : b.died;
        return a.born < b_end && b.born < a_end;
    }
    const int64_t* plan_;
    char* arena_;
    long made_ = 0, clock_ = 0;
    std::vector<Event> events_;
};

struct ConvStep {
    convolution_forward::primitive_desc pd;
    convolution_forward prim;
};

struct PoolStep {
    pooling_forward::primitive_desc pd;
    pooling_forward prim;
};

inline memory::dims src_dims(const int* s) { return {s[1], s[2], s[3], s[4], s[5]}; }

// A bias of `o` channels as a per-channel binary post-op's operand, and a convolution's
// arguments with its bias given both ways (the primitive reads the one it was made with).
inline memory::desc bias_after_desc(memory::dim o) { return memory::desc({1, o, 1, 1, 1}, dt::f32, tag::abcde); }

inline std::unordered_map<int, memory> conv_args(const memory& src, const memory& w, const memory& b,
                                                 const memory& dst) {
    memory after(bias_after_desc(b.get_desc().dims()[0]), eng(), b.get_data_handle());
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b},
                                         {DNNL_ARG_DST, dst}};
    for (int k = 0; k < 2; k++)            // the binary post-op's place: first, or after a sum
        args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(k) | DNNL_ARG_SRC_1] = after;
    return args;
}
inline memory::dims dst_dims(const int* s) { return {s[1], s[6], s[16], s[17], s[18]}; }

// The fused convolution of one shape (made once): conv + bias [+ sum into dst] [+ relu].
// `after`: the bias is a post-op, added to the finished sum (binary add, per channel; an
// eval-mode convolution's folded bias), as PyTorch adds a bias; else the primitive's own
// bias argument, which oneDNN 2.6's jit kernels add first, so that it enters every partial
// sum's rounding: on AVX-512 that put the float32 program 2-4x further from float64 than
// the folded network's float32 forward in PyTorch (Zen 5, R3D-10; with the bias after, in
// line with it; 2 % slower there).  Train mode's convolutions have a zero bias (their
// BatchNorm's comes after).
inline ConvStep& conv_step(const int* s, int prec, bool sum, bool relu, bool dst_f32, int layout, bool after) {
    static std::map<std::vector<int>, ConvStep> steps;
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    std::vector<int> key(s, s + 19);
    key.insert(key.end(), {prec, (int)sum, (int)relu, (int)dst_f32, layout, (int)after});
    auto it = steps.find(key);
    if (it != steps.end()) return it->second;
    dt type = prec ? dt::bf16 : dt::f32;
    memory::desc src = act_desc(src_dims(s), type, layout);
    memory::desc dst = act_desc(dst_dims(s), dst_f32 ? dt::f32 : type, layout);
    memory::desc wei({s[6], s[2], s[7], s[8], s[9]}, type, tag::any), bias({s[6]}, dt::f32, tag::x);
    post_ops ops;
    if (sum) ops.append_sum(1.f);            // first: oneDNN 2.6's jit kernels take no sum after a binary
    if (after) ops.append_binary(algorithm::binary_add, bias_after_desc(s[6]));
    if (relu) ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
    primitive_attr attr;
    attr.set_post_ops(ops);
    memory::dims strides{s[10], s[11], s[12]}, pad{s[13], s[14], s[15]};
    auto pd = after ? convolution_forward::primitive_desc(
                          convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, src,
                                                    wei, dst, strides, pad, pad), attr, eng())
                    : convolution_forward::primitive_desc(
                          convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, src,
                                                    wei, bias, dst, strides, pad, pad), attr, eng());
    return steps.emplace(key, ConvStep{pd, convolution_forward(pd)}).first->second;
}

inline PoolStep& pool_step(const int* p, int prec, const memory::desc& src, int layout) {
    static std::map<std::vector<int>, PoolStep> steps;
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    std::vector<int> key(p, p + 17);
    key.insert(key.end(), {prec, layout});
    auto it = steps.find(key);
    if (it != steps.end()) return it->second;
    dt type = prec ? dt::bf16 : dt::f32;
    memory::desc dst = act_desc({p[0], p[1], p[14], p[15], p[16]}, type, layout);
    auto pd = pooling_forward::primitive_desc(
        pooling_forward::desc(prop_kind::forward_inference, algorithm::pooling_max, src, dst, {p[8], p[9], p[10]},
                              {p[5], p[6], p[7]}, {p[11], p[12], p[13]}, {p[11], p[12], p[13]}),
        eng());
    return steps.emplace(key, PoolStep{pd, pooling_forward(pd)}).first->second;
}

// The plain float32 input as an activation (in `layout`, in `type`).
inline Buffer as_activation(memory input, dt type, int layout, Buffers& mem, stream& st) {
    memory::desc want = act_desc(input.get_desc().dims(), type, layout);
    if (want == input.get_desc()) return Buffer{input, nullptr};
    Buffer b = mem.get(want);
    reorder(input, b.m).execute(st, input, b.m);
    return b;
}

// A 1x1x1 convolution with a stride and no padding (a downsampling block's shortcut):
// oneDNN's kernel for it (jit:avx2, the direct one) ran at a quarter to a half of the rate
// of its stride-1 1x1 kernel.  The program copies every stride-th position into a buffer
// first (subsample) and runs the stride-1 1x1 convolution on it: the same products, summed
// over the same input channels.
inline bool subsampled(const int* ins) {
    const int* s = ins + 8;
    return ins[28] == 0 && s[7] == 1 && s[8] == 1 && s[9] == 1 && s[13] == 0 && s[14] == 0 && s[15] == 0 &&
           (s[10] > 1 || s[11] > 1 || s[12] > 1);
}

// The sizes a convolution instruction's primitive is made for (with K: `chunk` samples a call;
// subsampled: its output's positions at stride 1).
inline std::vector<int> step_sizes(const int* ins) {
    std::vector<int> s(ins + 8, ins + 27);
    if (ins[28] > 0) s[1] = ins[30];
    if (subsampled(ins)) {
        s[3] = s[16], s[4] = s[17], s[5] = s[18];
        s[10] = s[11] = s[12] = 1;
    }
    return s;
}

// A convolution instruction's input as its primitive `c` reads it: `src` itself, or for a
// subsampled one every stride-th position of `src` (which must have the instruction's own
// input sizes, in the layout act_desc gives them) copied into a new buffer, a channel block
// (channels last: a position's channels; plain: a value) at a time.
inline Buffer conv_input(int k, const int* ins, const ConvStep& c, const Buffer& src, int layout, Buffers& mem,
                         stream& st, const char* where) {
    memory::desc want = c.pd.src_desc();
    if (!subsampled(ins)) {
        if (!(want == src.m.get_desc()))
            throw std::runtime_error(std::string(where) + ": instruction " + std::to_string(k) +
                                     ": the input's layout is not the convolution's");
        return src;
    }
    const int* s = ins + 8;
    dt type = want.data_type();
    memory::desc whole = act_desc(src_dims(s), type, layout);
    if (!(whole == src.m.get_desc()) || !(act_desc({s[1], s[2], s[16], s[17], s[18]}, type, layout) == want))
        throw std::runtime_error(std::string(where) + ": instruction " + std::to_string(k) +
                                 ": the input's layout is not the subsampled convolution's");
    long block = channel_run(layout, s[2]);
    long N = s[1], CB = (s[2] + block - 1) / block, D = s[3], H = s[4], W = s[5];
    long OD = s[16], OH = s[17], OW = s[18], SD = s[10], SH = s[11], SW = s[12];
    size_t vec = block * (type == dt::f32 ? 4 : 2);
    Buffer out = mem.get(want);
    st.wait();
    const char* from = static_cast<const char*>(src.m.get_data_handle());
    char* to = static_cast<char*>(out.m.get_data_handle());
    #pragma omp parallel for collapse(2)
    for (long nc = 0; nc < N * CB; nc++)
        for (long od = 0; od < OD; od++)
            for (long oh = 0; oh < OH; oh++)
                for (long ow = 0; ow < OW; ow++)
                    std::memcpy(to + (((nc * OD + od) * OH + oh) * OW + ow) * vec,
                                from + (((nc * D + od * SD) * H + oh * SH) * W + ow * SW) * vec, vec);
    return out;
}

// The first convolution with its temporal taps as channels (K = ins[28]), into `dst`.
inline void run_taps_as_channels(const int* ins, ConvStep& c, const float* x, const memory& w, const memory& b,
                                 memory& dst, Buffers& mem, stream& st) {
    const int* s = ins + 8;
    int K = ins[28], pad = ins[29], chunk = ins[30];
    int N = s[1], C = s[2] / K, D = s[3];
    size_t plane = (size_t)s[4] * s[5];
    Buffer stacked = mem.get({{chunk, s[2], D, s[4], s[5]}, dt::f32, tag::ncdhw}), src = mem.get(c.pd.src_desc());
    size_t per_sample = dst.get_desc().get_size() / N;
    float* xs = static_cast<float*>(stacked.m.get_data_handle());
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
        reorder(stacked.m, src.m).execute(st, stacked.m, src.m);
        memory part(c.pd.dst_desc(), eng(), static_cast<char*>(dst.get_data_handle()) + n0 * per_sample);
        c.prim.execute(st, conv_args(src.m, w, b, part));
        st.wait();
    }
}

// The primitive of a convolution instruction: CONV with its post-ops; CONV_TRAIN plain
// (its BatchNorm, sum and ReLU come after, in bn_train_blocked), in the program's precision.
inline ConvStep& step_of(const int* ins, int prec, int layout) {
    bool train = ins[0] == OP_CONV_TRAIN;
    std::vector<int> s = step_sizes(ins);
    // the bias after the sum in float32 (its accuracy); in bfloat16 the operands' rounding
    // dwarfs the bias's, and the post-op cost 6 % of an eval forward (Zen 5, nCdhw16c)
    return conv_step(s.data(), prec, !train && ins[3], !train && ins[4], !train && ins[31], layout,
                     !train && prec == 0);
}

// The BatchNorms' parameters and running averages, concatenated over the program's
// BatchNorms (`total` channels), and in train mode where their statistics go: stats
// [4, total] (csrc/bn_stats_cpu.h, cten_bn_finish_channel).
struct Norms {
    const float *gamma, *beta, *running_mean, *running_var;
    float* stats;
    long total;
    double momentum, eps;
    int updates;
};

// An eval-mode BatchNorm's channel folded into the convolution before it, as numpy's
// frozen_resnet.fold computes it: scale = gamma / sqrt(var + eps) and the bias
// beta - mean * scale in float64 (each operation rounded as numpy's: no contraction,
// whatever -Ofast allows), the bias rounded once to float32.
inline double fold_channel(const Norms& nm, long c, float& bias) {
    volatile double v = (double)nm.running_var[c] + nm.eps;
    volatile double root = std::sqrt((double)v);
    volatile double scale = (double)nm.gamma[c] / root;
    volatile double shift = (double)nm.running_mean[c] * scale;
    bias = (float)((double)nm.beta[c] - shift);
    return scale;
}

// A weight folded: float64 product, rounded once to float32 (numpy's astype).
inline float fold_weight(float w, double scale) { return (float)((double)w * scale); }

// A convolution instruction's weights as they are stored: its own float32 oidhw array,
// viewed with a stride where its temporal taps are cut ([32], [33]); taps as channels read
// the same bytes as [O, C*K, 1, kH, kW].
inline memory weight_source(const int* ins, const float* own) {
    const int* s = ins + 8;
    memory::dims dims{s[6], s[2], s[7], s[8], s[9]};
    memory::dim taps = ins[32], first = ins[33], plane = (memory::dim)s[8] * s[9];
    if (ins[28] > 0 || taps == s[7]) return memory({dims, dt::f32, tag::oidhw}, eng(), const_cast<float*>(own));
    memory::dims strides{s[2] * taps * plane, taps * plane, plane, s[9], 1};
    return memory({dims, dt::f32, strides}, eng(), const_cast<float*>(own + first * plane));
}

// A convolution's weights reordered now, from its own array into the layout (and type) its
// primitive `c` wants.  Eval mode (`folded`): first folded with its BatchNorm (fold_channel,
// channels from [7]) into a float32 copy of the layer, and its bias into `bias`.
//
// The folded copy and the reordered weights live in two buffers the thread keeps, grown to
// the largest layer's (about 10 MB each for R3D-101), not in an allocation of each per
// convolution: those blocks (1-10 MB, under glibc's mmap threshold) came and went between
// the activations' and left glibc's heap in pieces that the next ones did not fit, ~50-100 MB
// more resident by the end of each call at the paper's shape.  The convolution that read the
// last ones is finished first (`st.wait()`), and one convolution's are in use at a time.
struct WeightScratch {
    std::vector<float> layer;
    std::vector<char> packed;
    char* packed_at(size_t bytes) {             // 64-byte aligned, as oneDNN wants its buffers
        if (packed.size() < bytes + 64) packed.resize(bytes + 64);
        return reinterpret_cast<char*>(((uintptr_t)packed.data() + 63) / 64 * 64);
    }
};
inline WeightScratch& weight_scratch() {
    thread_local WeightScratch scratch;
    return scratch;
}

inline memory weights_now(const ConvStep& c, const int* ins, const float* own, const Norms* folded,
                          std::vector<float>& bias, stream& st) {
    st.wait();                                  // the last convolution is done with `bias` and the scratch
    memory src = weight_source(ins, own);
    WeightScratch& scratch = weight_scratch();
    std::vector<float>& layer = scratch.layer;
    if (folded) {
        const int* s = ins + 8;
        long O = s[6], C = s[2], run = (long)s[7] * s[8] * s[9], off = ins[7];
        long taps = ins[32], first = ins[33], plane = (long)s[8] * s[9];
        bool whole = ins[28] > 0 || taps == s[7];
        layer.resize((size_t)O * C * run);
        bias.resize(O);
        #pragma omp parallel for
        for (long o = 0; o < O; o++) {
            double scale = fold_channel(*folded, off + o, bias[o]);
            for (long ci = 0; ci < C; ci++) {
                const float* from = own + (whole ? (o * C + ci) * run : ((o * C + ci) * taps + first) * plane);
                float* to = layer.data() + (o * C + ci) * run;
                for (long i = 0; i < run; i++) to[i] = fold_weight(from[i], scale);
            }
        }
        src = memory({{s[6], s[2], s[7], s[8], s[9]}, dt::f32, tag::oidhw}, eng(), layer.data());
    }
    memory::desc wd = c.pd.weights_desc();
    memory w(wd, eng(), scratch.packed_at(wd.get_size()));
    reorder(src, w).execute(st, src, w);
    st.wait();
    return w;
}

// ---- train-mode BatchNorm on a blocked activation ------------------------------------------

inline float bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Round to nearest even, as oneDNN's reorders and torch's conversion do (NaN stays NaN).
inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

inline float load(const float* p, size_t i) { return p[i]; }
inline float load(const uint16_t* p, size_t i) { return bf16_to_f32(p[i]); }
inline void store(float* p, size_t i, float v) { p[i] = v; }
inline void store(uint16_t* p, size_t i, float v) { p[i] = f32_to_bf16(v); }


// x, N x C x S (S positions) with its channels in groups of B (8 or 16, C a multiple of B):
// blocked (nCdhw<B>c: a group's S positions contiguous, B channels each) or channels last
// (ndhwc: a position's C channels contiguous, `last`), the batch's statistics of each channel,
// then y = x * alpha + beta [+ y] [max(., 0)], alpha = gamma / std, beta = bias - mean * alpha
// (float32).  y may be x itself (same type, no sum).  Both layouts sum each channel in the same
// order (samples, then positions), so their statistics are the same numbers.
template <int B, typename Tin, typename Tout>
inline void bn_train_block(const Tin* x, Tout* y, bool sum, bool relu, long N, long C, long S, long off,
                           const Norms& tn, bool last) {
    long CB = C / B;
    // element (n, group cb, position i, lane l) at n * ns + cb * gs + i * ps + l
    size_t ns = (size_t)C * S, gs = last ? B : (size_t)S * B, ps = last ? C : B;
    double count = (double)N * S;
    #pragma omp parallel for
    for (long cb = 0; cb < CB; cb++) {
        double acc[B] = {0}, sq[B] = {0}, mean[B];
        for (long n = 0; n < N; n++) {
            const Tin* p = x + n * ns + cb * gs;
            for (long i = 0; i < S; i++)
                #pragma omp simd
                for (int l = 0; l < B; l++) acc[l] += load(p, i * ps + l);
        }
        for (int l = 0; l < B; l++) mean[l] = acc[l] / count;
        for (long n = 0; n < N; n++) {
            const Tin* p = x + n * ns + cb * gs;
            for (long i = 0; i < S; i++)
                #pragma omp simd
                for (int l = 0; l < B; l++) {
                    double d = load(p, i * ps + l) - mean[l];
                    sq[l] += d * d;
                }
        }
        float alpha[B], beta[B];
        for (int l = 0; l < B; l++) {
            long c = off + cb * B + l;
            cten_bn_finish_channel(c, tn.total, mean[l], sq[l] / count, count, tn.running_mean[c],
                                   tn.running_var[c], tn.momentum, tn.eps, tn.updates, tn.stats);
            volatile float a = tn.gamma[c] * tn.stats[tn.total + c];
            volatile float shift = tn.stats[c] * a;
            alpha[l] = a;
            beta[l] = tn.beta[c] - shift;
        }
        for (long n = 0; n < N; n++) {
            size_t base = n * ns + cb * gs;
            for (long i = 0; i < S; i++)
                #pragma omp simd
                for (int l = 0; l < B; l++) {
                    size_t at = base + i * ps + l;
                    float v = load(x, at) * alpha[l] + beta[l];
                    if (sum) v = v + load(y, at);
                    if (relu) v = v > 0.f ? v : 0.f;
                    store(y, at, v);
                }
        }
    }
}

// The channels' group size of bn_train_block for C channels in `layout` (0: none fits).
inline int bn_group(int layout, long C) {
    int group = layout == LAYOUT_CHANNELS_LAST ? (C % 16 == 0 ? 16 : 8) : layout;
    return (group == 8 || group == 16) && C % group == 0 ? group : 0;
}

template <typename Tin, typename Tout>
inline void bn_train_blocked(const Tin* x, Tout* y, bool sum, bool relu, long N, long C, long S, long off,
                             const Norms& tn, int layout) {
    bool last = layout == LAYOUT_CHANNELS_LAST;
    int group = bn_group(layout, C);
    if (group == 16)
        bn_train_block<16>(x, y, sum, relu, N, C, S, off, tn, last);
    else if (group == 8)
        bn_train_block<8>(x, y, sum, relu, N, C, S, off, tn, last);
    else
        throw std::runtime_error("bn_train_blocked: " + std::to_string(C) + " channels in layout " +
                                 std::to_string(layout));
}

// A CONV_TRAIN instruction: the convolution into a buffer of the program's precision,
// then its train-mode BatchNorm into the dst slot (new, the buffer itself, or summed into).
inline void run_conv_train(int k, const int* ins, int prec, int layout, const float* x, std::vector<Buffer>& slots,
                           ConvStep& c, const memory& w, const Norms& tn, Buffers& mem, stream& st) {
    const int* s = ins + 8;
    dt type = prec ? dt::bf16 : dt::f32;
    std::vector<float> zeros(s[6], 0.f);             // no bias: the BatchNorm's comes after
    memory b({{s[6]}, dt::f32, tag::x}, eng(), zeros.data());
    memory::desc out_desc = act_desc(dst_dims(s), type, layout);
    std::vector<int> sizes = step_sizes(ins);        // the primitive's (taps as channels: `chunk` samples)
    if (bn_group(layout, s[6]) == 0 || (layout != LAYOUT_CHANNELS_LAST && s[6] < layout) ||
        !(c.pd.dst_desc() == act_desc(dst_dims(sizes.data()), type, layout)))
        throw std::runtime_error("cten_frozen_run_train: instruction " + std::to_string(k) + ": a train-mode "
                                 "BatchNorm needs its " + std::to_string(s[6]) + " channels in groups of 8 "
                                 "or 16 of layout " + std::to_string(layout));
    Buffer tmp = mem.get(out_desc);
    if (ins[28] > 0) {
        if (ins[1] != 0)
            throw std::runtime_error("cten_frozen_run_train: instruction " + std::to_string(k) +
                                     ": taps as channels apply to the first convolution only");
        run_taps_as_channels(ins, c, x, w, b, tmp.m, mem, st);
    } else {
        Buffer src = conv_input(k, ins, c, slots[ins[1]], layout, mem, st, "cten_frozen_run_train");
        c.prim.execute(st, conv_args(src.m, w, b, tmp.m));
        st.wait();
    }
    bool sum = ins[3], out_f32 = ins[31] || !prec;
    memory::desc dst_desc = act_desc(dst_dims(s), out_f32 ? dt::f32 : type, layout);
    if (sum) {
        if (!(slots[ins[2]].m.get_desc() == dst_desc))
            throw std::runtime_error("cten_frozen_run_train: instruction " + std::to_string(k) +
                                     ": the shortcut's layout is not the convolution's output's");
    } else {
        slots[ins[2]] = dst_desc == out_desc ? tmp : mem.get(dst_desc);
    }
    long N = s[1], C = s[6], S = (long)s[16] * s[17] * s[18];
    void* from = tmp.m.get_data_handle();
    void* to = slots[ins[2]].m.get_data_handle();
    if (!prec)
        bn_train_blocked((const float*)from, (float*)to, sum, ins[4], N, C, S, ins[7], tn, layout);
    else if (out_f32)
        bn_train_blocked((const uint16_t*)from, (float*)to, sum, ins[4], N, C, S, ins[7], tn, layout);
    else
        bn_train_blocked((const uint16_t*)from, (uint16_t*)to, sum, ins[4], N, C, S, ins[7], tn, layout);
}

}  // namespace cten_frozen

// The names of the oneDNN implementations a program's convolutions run (one a line, at most
// size - 1 characters, NUL-terminated): "jit:..." or, where a layout has no fast kernel, "ref:...".
inline void cten_frozen_impls(const int* prog, char* out, int size) {
    using namespace cten_frozen;
    std::string all;
    for (int k = 1; k <= prog[0]; k++) {
        const int* ins = prog + WIDTH * k;
        if (ins[0] == OP_CONV || ins[0] == OP_CONV_TRAIN)
            all += std::string(step_of(ins, prog[1], prog[10]).pd.impl_info_str()) + "\n";
    }
    size_t n = std::min(all.size(), (size_t)size - 1);
    std::memcpy(out, all.data(), n);
    out[n] = 0;
}

// The layout oneDNN chooses for the program's activations in this precision on this CPU
// (chosen_layout: 16, 8, 1 channels last, 0 none of ours).
inline int cten_frozen_layout(int prec) {
    return cten_frozen::chosen_layout(prec ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32);
}

// 1 where this CPU's oneDNN has a bfloat16 convolution with these post-ops (AVX-512 and up).
inline int cten_frozen_native_bf16() {
    using namespace cten_frozen;
    static const int s[19] = {3, 1, 16, 1, 8, 8, 16, 1, 3, 3, 1, 1, 1, 0, 1, 1, 1, 8, 8};
    try {
        int layout = chosen_layout(dt::bf16);
        if (layout == LAYOUT_NONE) layout = LAYOUT_BLOCK16;
        conv_step(s, 1, false, true, false, layout, false);     // inside a block
        conv_step(s, 1, true, true, true, layout, false);       // a block's last: float32 shortcut
        return 1;
    } catch (const dnnl::error&) {
        return 0;
    }
}

namespace cten_frozen {

// Run the program on the plain float32 input x; the plain float32 result into out.  The
// weights are each convolution's own array (the i-th convolution's at each[i]); `nm` the
// BatchNorms' arrays, folded into the convolutions (CONV) or normalising with the batch's
// statistics (CONV_TRAIN, `train`).
inline void run(const float* x, const float* const* each, const int* prog, float* out, const Norms& nm,
                bool train, Buffers& mem) {
    int n = prog[0], prec = prog[1], layout = prog[10];
    if (!known_layout(layout))
        throw std::runtime_error("cten_frozen_run: unknown layout " + std::to_string(layout));
    dt type = prec ? dt::bf16 : dt::f32;
    std::vector<Buffer> slots(prog[3]);
    stream st(eng());
    const int* first = prog + WIDTH + 8;
    memory input(act_desc(src_dims(first), dt::f32, layout, true), eng(), const_cast<float*>(x));
    if (prog[WIDTH + 28] == 0) slots[0] = as_activation(input, type, layout, mem, st);   // else read as it is
    int conv_i = 0;
    std::vector<float> bias;
    auto weights = [&](const ConvStep& c, const int* ins) {
        return weights_now(c, ins, each[conv_i++], ins[0] == OP_CONV ? &nm : nullptr, bias, st);
    };
    for (int k = 1; k <= n; k++) {
        const int* ins = prog + WIDTH * k;
        if ((ins[0] == OP_CONV_TRAIN) != train && (ins[0] == OP_CONV || ins[0] == OP_CONV_TRAIN))
            throw std::runtime_error("cten_frozen_run: instruction " + std::to_string(k) + ": " +
                                     (train ? "an eval" : "a train") + "-mode BatchNorm in " +
                                     (train ? "a train" : "an eval") + "-mode program");
        if (ins[0] == OP_CONV_TRAIN) {
            ConvStep& c = step_of(ins, prec, layout);
            memory w = weights(c, ins);
            run_conv_train(k, ins, prec, layout, x, slots, c, w, nm, mem, st);
        } else if (ins[0] == OP_CONV && ins[28] > 0) {
            const int* s = ins + 8;
            ConvStep& c = step_of(ins, prec, layout);
            if (ins[1] != 0 || ins[3])
                throw std::runtime_error("cten_frozen_run: instruction " + std::to_string(k) +
                                         ": taps as channels apply to the first convolution only");
            slots[ins[2]] = mem.get(act_desc(dst_dims(s), ins[31] ? dt::f32 : type, layout));
            memory w = weights(c, ins);
            memory b({{s[6]}, dt::f32, tag::x}, eng(), bias.data());
            run_taps_as_channels(ins, c, x, w, b, slots[ins[2]].m, mem, st);
        } else if (ins[0] == OP_CONV) {
            const int* s = ins + 8;
            ConvStep& c = step_of(ins, prec, layout);
            Buffer src = conv_input(k, ins, c, slots[ins[1]], layout, mem, st, "cten_frozen_run");
            if (ins[3]) {
                if (!(c.pd.dst_desc() == slots[ins[2]].m.get_desc()))
                    throw std::runtime_error("cten_frozen_run: instruction " + std::to_string(k) +
                                             ": the shortcut's layout is not the convolution's output's");
            } else {
                slots[ins[2]] = mem.get(c.pd.dst_desc());
            }
            memory w = weights(c, ins);
            memory b({{s[6]}, dt::f32, tag::x}, eng(), bias.data());
            c.prim.execute(st, conv_args(src.m, w, b, slots[ins[2]].m));
            if (subsampled(ins)) st.wait();      // the subsampled copy is freed at the block's end
        } else if (ins[0] == OP_MAXPOOL) {
            Buffer src = slots[ins[1]];
            PoolStep& p = pool_step(ins + 8, prec, src.m.get_desc(), layout);
            slots[ins[2]] = mem.get(p.pd.dst_desc());
            p.prim.execute(st, {{DNNL_ARG_SRC, src.m}, {DNNL_ARG_DST, slots[ins[2]].m}});
        } else if (ins[0] == OP_CAST) {
            Buffer src = slots[ins[1]];
            slots[ins[2]] = mem.get(act_desc(src.m.get_desc().dims(), ins[3] ? dt::f32 : type, layout));
            reorder(src.m, slots[ins[2]].m).execute(st, src.m, slots[ins[2]].m);
        } else if (ins[0] == OP_FREE) {
            st.wait();
            slots[ins[1]] = Buffer();
        } else {
            throw std::runtime_error("cten_frozen_run: unknown instruction " + std::to_string(ins[0]));
        }
    }
    memory result(act_desc({prog[4], prog[5], prog[6], prog[7], prog[8]}, dt::f32, layout, true), eng(), out);
    reorder(slots[prog[2]].m, result).execute(st, slots[prog[2]].m, result);
    st.wait();
}

// run with the call's buffers in `arena` as `plan` places them, or (plan null) each its own,
// their plan then written to plan_out (Buffers).
inline void run_planned(const float* x, const float* const* each, const int* prog, float* out, const Norms& nm,
                        bool train, const int64_t* plan, char* arena, int64_t* plan_out, long plan_capacity) {
    Buffers mem(plan, arena);
    run(x, each, prog, out, nm, train, mem);       // every Buffer of the call is gone at its return
    if (!plan) mem.plan(plan_out, plan_capacity);
}

}  // namespace cten_frozen

// Eval mode: every BatchNorm folded into its convolution as it runs (CONV instructions);
// the convolutions' weights each[i], the BatchNorms' arrays concatenated (prog header [9]
// channels) and their eps.  The call's buffers: in `arena` as `plan` places them, or (plan
// null) allocated each, and their plan written to plan_out[plan_capacity] (Buffers).
inline void cten_frozen_run(const float* x, const float* const* each, const int* prog, const float* gamma,
                            const float* beta, const float* running_mean, const float* running_var, double eps,
                            float* out, const int64_t* plan, char* arena, int64_t* plan_out, long plan_capacity) {
    cten_frozen::Norms nm{gamma, beta, running_mean, running_var, nullptr, prog[9], 0.0, eps, 0};
    cten_frozen::run_planned(x, each, prog, out, nm, false, plan, arena, plan_out, plan_capacity);
}

// Train mode: the same arrays; stats [4, channels] gets each channel's batch mean, 1/std and
// updated running mean and variance (cten_bn_finish_channel), for the caller to store.
inline void cten_frozen_run_train(const float* x, const float* const* each, const int* prog, const float* gamma,
                                  const float* beta, const float* running_mean, const float* running_var,
                                  double momentum, double eps, int updates, float* out, float* stats,
                                  const int64_t* plan, char* arena, int64_t* plan_out, long plan_capacity) {
    cten_frozen::Norms nm{gamma, beta, running_mean, running_var, stats, prog[9], momentum, eps, updates};
    cten_frozen::run_planned(x, each, prog, out, nm, true, plan, arena, plan_out, plan_capacity);
}

// numpy's frozen_resnet.fold of n output channels (`per` weights each, contiguous) into
// w_out and bias_out, as the program folds (a test compares the two bit for bit).
inline void cten_frozen_fold(const float* w, long n, long per, const float* gamma, const float* beta,
                             const float* running_mean, const float* running_var, double eps, float* w_out,
                             float* bias_out) {
    cten_frozen::Norms nm{gamma, beta, running_mean, running_var, nullptr, n, 0.0, eps, 0};
    for (long o = 0; o < n; o++) {
        double scale = cten_frozen::fold_channel(nm, o, bias_out[o]);
        for (long i = 0; i < per; i++) w_out[o * per + i] = cten_frozen::fold_weight(w[o * per + i], scale);
    }
}
