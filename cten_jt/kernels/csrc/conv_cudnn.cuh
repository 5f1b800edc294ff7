// 2D and 3D convolution on cuDNN (8 or 9) for Jittor's GPU path: forward,
// backward-data and backward-filter, each writing one output, with the same
// entry points and size array as conv_dnnl.h (see that file):
//   s = {nd, N, C, D, H, W, O, KD, KH, KW, SD, SH, SW, PD, PH, PW, OD, OH, OW}
//
// Jittor 1.3.11's own cuDNN op library looks for cuDNN 8's component libraries
// and calls RNN functions that cuDNN 9 removed, so it does not load against the
// cuDNN 9 wheels; this op uses only the convolution API, present in both.
// Arrays are plain NC(D)HW float32; the math is fp32 FMA (no TF32) unless
// `tf32` is set, so results compare with PyTorch's at fp32 tolerance.  The
// algorithms are cuDNN's heuristic choice among the deterministic ones, cached
// per shape; one workspace grows as needed.  Everything runs on the stream
// Jittor launches its kernels on (the default stream).
//
// Precision `prec` (cten_jt.precision, as in conv_dnnl.h): 0 float32; 1
// bfloat16 and 2 float16, on the tensor cores (CUDNN_TENSOR_OP_MATH) with
// float32 accumulation (compute type CUDNN_DATA_FLOAT).  Jittor's arrays stay
// float32: the operands are converted (round to nearest even) into scratch
// buffers, cuDNN writes its low-precision result into a scratch buffer, and it
// is widened into the float32 output, so every result holds a bfloat16 (or
// float16) value, as torch.autocast's does.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace cten_cudnn {

inline void check(cudnnStatus_t status, const char* what) {
    if (status != CUDNN_STATUS_SUCCESS)
        throw std::runtime_error(std::string("cuDNN ") + what + ": " + cudnnGetErrorString(status));
}

inline void check_cuda(cudaError_t status, const char* what) {
    if (status != cudaSuccess)
        throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorString(status));
}

inline cudnnHandle_t handle() {
    static cudnnHandle_t h = nullptr;
    if (h == nullptr) {
        check(cudnnCreate(&h), "cudnnCreate");
        check(cudnnSetStream(h, 0), "cudnnSetStream");
    }
    return h;
}

// One workspace for every call, grown on demand (calls are serialised on one stream).
inline void* workspace(size_t bytes) {
    static void* ptr = nullptr;
    static size_t size = 0;
    if (bytes > size) {
        if (ptr != nullptr) {
            check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
            check_cuda(cudaFree(ptr), "cudaFree");
        }
        check_cuda(cudaMalloc(&ptr, bytes), "cudaMalloc (cuDNN workspace)");
        size = bytes;
    }
    return ptr;
}

// Scratch buffer `i` (0..2: the two operands and the result) of at least
// `bytes`, grown on demand, like the workspace.
inline void* scratch(int i, size_t bytes) {
    static void* ptr[3] = {nullptr, nullptr, nullptr};
    static size_t size[3] = {0, 0, 0};
    if (bytes > size[i]) {
        if (ptr[i] != nullptr) {
            check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
            check_cuda(cudaFree(ptr[i]), "cudaFree");
        }
        check_cuda(cudaMalloc(&ptr[i], bytes), "cudaMalloc (low-precision operands)");
        size[i] = bytes;
    }
    return ptr[i];
}

template <typename T> __device__ __forceinline__ T to_low(float v);
template <> __device__ __forceinline__ __nv_bfloat16 to_low<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half to_low<__half>(float v) { return __float2half_rn(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float widen(__half v) { return __half2float(v); }

template <typename T>
__global__ void narrow_kernel(const float* in, T* out, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = to_low<T>(in[i]);
}

template <typename T>
__global__ void widen_kernel(const T* in, float* out, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        out[i] = widen(in[i]);
}

inline int blocks_for(long long n) { return (int)std::min<long long>((n + 255) / 256, 65535); }

// `n` floats as bfloat16 (prec 1) or float16 (prec 2) values in scratch buffer `slot`.
inline void* narrow(const float* in, long long n, int prec, int slot) {
    void* out = scratch(slot, (size_t)n * 2);
    if (prec == 1)
        narrow_kernel<__nv_bfloat16><<<blocks_for(n), 256>>>(in, static_cast<__nv_bfloat16*>(out), n);
    else
        narrow_kernel<__half><<<blocks_for(n), 256>>>(in, static_cast<__half*>(out), n);
    check_cuda(cudaGetLastError(), "narrowing kernel");
    return out;
}

inline void widen_into(const void* in, float* out, long long n, int prec) {
    if (prec == 1)
        widen_kernel<__nv_bfloat16><<<blocks_for(n), 256>>>(static_cast<const __nv_bfloat16*>(in), out, n);
    else
        widen_kernel<__half><<<blocks_for(n), 256>>>(static_cast<const __half*>(in), out, n);
    check_cuda(cudaGetLastError(), "widening kernel");
}

inline long long count(const std::vector<int>& dims) {
    long long n = 1;
    for (int d : dims) n *= d;
    return n;
}

struct Plan {
    long long nx, nw, ny;          // element counts of input, weights, output
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t fwd_bytes, bwd_data_bytes, bwd_filter_bytes;
};

inline std::vector<int> packed_strides(const std::vector<int>& dims) {
    std::vector<int> strides(dims.size(), 1);
    for (int i = (int)dims.size() - 2; i >= 0; i--) strides[i] = strides[i + 1] * dims[i + 1];
    return strides;
}

inline cudnnDataType_t data_type(int prec) {
    return prec == 1 ? CUDNN_DATA_BFLOAT16 : prec == 2 ? CUDNN_DATA_HALF : CUDNN_DATA_FLOAT;
}

inline void tensor_desc(cudnnTensorDescriptor_t* desc, const std::vector<int>& dims, cudnnDataType_t type) {
    check(cudnnCreateTensorDescriptor(desc), "cudnnCreateTensorDescriptor");
    auto strides = packed_strides(dims);
    check(cudnnSetTensorNdDescriptor(*desc, type, (int)dims.size(), dims.data(), strides.data()),
          "cudnnSetTensorNdDescriptor");
}

// The first deterministic algorithm of cuDNN's ranked heuristic list.
template <typename Perf, typename Algo>
inline Algo pick(const Perf* perf, int count, const char* what) {
    for (int i = 0; i < count; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC)
            return perf[i].algo;
    throw std::runtime_error(std::string("cuDNN found no deterministic ") + what + " algorithm");
}

inline Plan& plan_for(const int* s, int prec, bool tf32) {
    static std::map<std::vector<int>, Plan> plans;
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    std::vector<int> key(s, s + 19);
    key.push_back(tf32 ? 1 : 0);
    key.push_back(prec);
    cudnnDataType_t type = data_type(prec);
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;

    Plan p;
    int nd = s[0];
    std::vector<int> xd, wd, yd, pad, stride, dil;
    if (nd == 2) {
        xd = {s[1], s[2], s[4], s[5]};
        wd = {s[6], s[2], s[8], s[9]};
        yd = {s[1], s[6], s[17], s[18]};
        pad = {s[14], s[15]};
        stride = {s[11], s[12]};
    } else {
        xd = {s[1], s[2], s[3], s[4], s[5]};
        wd = {s[6], s[2], s[7], s[8], s[9]};
        yd = {s[1], s[6], s[16], s[17], s[18]};
        pad = {s[13], s[14], s[15]};
        stride = {s[10], s[11], s[12]};
    }
    dil.assign(pad.size(), 1);
    p.nx = count(xd);
    p.nw = count(wd);
    p.ny = count(yd);
    tensor_desc(&p.x, xd, type);
    tensor_desc(&p.y, yd, type);
    check(cudnnCreateFilterDescriptor(&p.w), "cudnnCreateFilterDescriptor");
    check(cudnnSetFilterNdDescriptor(p.w, type, CUDNN_TENSOR_NCHW, (int)wd.size(), wd.data()),
          "cudnnSetFilterNdDescriptor");
    check(cudnnCreateConvolutionDescriptor(&p.conv), "cudnnCreateConvolutionDescriptor");
    check(cudnnSetConvolutionNdDescriptor(p.conv, (int)pad.size(), pad.data(), stride.data(), dil.data(),
                                          CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
          "cudnnSetConvolutionNdDescriptor");
    cudnnMathType_t math = prec != 0 ? CUDNN_TENSOR_OP_MATH : tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    check(cudnnSetConvolutionMathType(p.conv, math), "cudnnSetConvolutionMathType");

    cudnnHandle_t h = handle();
    int n = 0;
    cudnnConvolutionFwdAlgoPerf_t fperf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    check(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, fperf),
          "cudnnGetConvolutionForwardAlgorithm_v7");
    p.fwd = pick<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(fperf, n, "forward");
    check(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, p.fwd, &p.fwd_bytes),
          "cudnnGetConvolutionForwardWorkspaceSize");

    cudnnConvolutionBwdDataAlgoPerf_t dperf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    check(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                      &n, dperf),
          "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    p.bwd_data = pick<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(dperf, n, "backward-data");
    check(cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, p.conv, p.x, p.bwd_data, &p.bwd_data_bytes),
          "cudnnGetConvolutionBackwardDataWorkspaceSize");

    cudnnConvolutionBwdFilterAlgoPerf_t wperf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    check(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w,
                                                        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, wperf),
          "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    p.bwd_filter = pick<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(wperf, n,
                                                                                             "backward-filter");
    check(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x, p.y, p.conv, p.w, p.bwd_filter, &p.bwd_filter_bytes),
          "cudnnGetConvolutionBackwardFilterWorkspaceSize");
    return plans.emplace(key, p).first->second;
}

}  // namespace cten_cudnn

// Each entry point: float32 arrays in and out; with prec 1 or 2 the operands go
// through scratch buffers in that precision (narrow) and the result comes back
// widened.  The frozen-weight cache is CPU-only (conv.py), so the weights are
// narrowed on each call here.
inline void cten_conv_forward_cudnn(const float* x, const float* w, float* y, const int* s, int prec, bool tf32) {
    using namespace cten_cudnn;
    Plan& p = plan_for(s, prec, tf32);
    const float one = 1.f, zero = 0.f;
    const void* xs = prec ? narrow(x, p.nx, prec, 0) : (const void*)x;
    const void* ws = prec ? narrow(w, p.nw, prec, 1) : (const void*)w;
    void* ys = prec ? scratch(2, (size_t)p.ny * 2) : (void*)y;
    check(cudnnConvolutionForward(handle(), &one, p.x, xs, p.w, ws, p.conv, p.fwd, workspace(p.fwd_bytes),
                                  p.fwd_bytes, &zero, p.y, ys),
          "cudnnConvolutionForward");
    if (prec) widen_into(ys, y, p.ny, prec);
}

inline void cten_conv_backward_data_cudnn(const float* dy, const float* w, float* dx, const int* s, int prec,
                                          bool tf32) {
    using namespace cten_cudnn;
    Plan& p = plan_for(s, prec, tf32);
    const float one = 1.f, zero = 0.f;
    const void* dys = prec ? narrow(dy, p.ny, prec, 0) : (const void*)dy;
    const void* ws = prec ? narrow(w, p.nw, prec, 1) : (const void*)w;
    void* dxs = prec ? scratch(2, (size_t)p.nx * 2) : (void*)dx;
    check(cudnnConvolutionBackwardData(handle(), &one, p.w, ws, p.y, dys, p.conv, p.bwd_data,
                                       workspace(p.bwd_data_bytes), p.bwd_data_bytes, &zero, p.x, dxs),
          "cudnnConvolutionBackwardData");
    if (prec) widen_into(dxs, dx, p.nx, prec);
}

inline void cten_conv_backward_weights_cudnn(const float* x, const float* dy, float* dw, const int* s, int prec,
                                             bool tf32) {
    using namespace cten_cudnn;
    Plan& p = plan_for(s, prec, tf32);
    const float one = 1.f, zero = 0.f;
    const void* xs = prec ? narrow(x, p.nx, prec, 0) : (const void*)x;
    const void* dys = prec ? narrow(dy, p.ny, prec, 1) : (const void*)dy;
    void* dws = prec ? scratch(2, (size_t)p.nw * 2) : (void*)dw;
    check(cudnnConvolutionBackwardFilter(handle(), &one, p.x, xs, p.y, dys, p.conv, p.bwd_filter,
                                         workspace(p.bwd_filter_bytes), p.bwd_filter_bytes, &zero, p.w, dws),
          "cudnnConvolutionBackwardFilter");
    if (prec) widen_into(dws, dw, p.nw, prec);
}
