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
#pragma once
#include <cuda_runtime.h>
#include <cudnn.h>
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

struct Plan {
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

inline void tensor_desc(cudnnTensorDescriptor_t* desc, const std::vector<int>& dims) {
    check(cudnnCreateTensorDescriptor(desc), "cudnnCreateTensorDescriptor");
    auto strides = packed_strides(dims);
    check(cudnnSetTensorNdDescriptor(*desc, CUDNN_DATA_FLOAT, (int)dims.size(), dims.data(), strides.data()),
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

inline Plan& plan_for(const int* s, bool tf32) {
    static std::map<std::vector<int>, Plan> plans;
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    std::vector<int> key(s, s + 19);
    key.push_back(tf32 ? 1 : 0);
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
    tensor_desc(&p.x, xd);
    tensor_desc(&p.y, yd);
    check(cudnnCreateFilterDescriptor(&p.w), "cudnnCreateFilterDescriptor");
    check(cudnnSetFilterNdDescriptor(p.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, (int)wd.size(), wd.data()),
          "cudnnSetFilterNdDescriptor");
    check(cudnnCreateConvolutionDescriptor(&p.conv), "cudnnCreateConvolutionDescriptor");
    check(cudnnSetConvolutionNdDescriptor(p.conv, (int)pad.size(), pad.data(), stride.data(), dil.data(),
                                          CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
          "cudnnSetConvolutionNdDescriptor");
    check(cudnnSetConvolutionMathType(p.conv, tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH),
          "cudnnSetConvolutionMathType");

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

inline void cten_conv_forward_cudnn(const float* x, const float* w, float* y, const int* s, bool tf32) {
    using namespace cten_cudnn;
    Plan& p = plan_for(s, tf32);
    const float one = 1.f, zero = 0.f;
    check(cudnnConvolutionForward(handle(), &one, p.x, x, p.w, w, p.conv, p.fwd, workspace(p.fwd_bytes),
                                  p.fwd_bytes, &zero, p.y, y),
          "cudnnConvolutionForward");
}

inline void cten_conv_backward_data_cudnn(const float* dy, const float* w, float* dx, const int* s, bool tf32) {
    using namespace cten_cudnn;
    Plan& p = plan_for(s, tf32);
    const float one = 1.f, zero = 0.f;
    check(cudnnConvolutionBackwardData(handle(), &one, p.w, w, p.y, dy, p.conv, p.bwd_data,
                                       workspace(p.bwd_data_bytes), p.bwd_data_bytes, &zero, p.x, dx),
          "cudnnConvolutionBackwardData");
}

inline void cten_conv_backward_weights_cudnn(const float* x, const float* dy, float* dw, const int* s, bool tf32) {
    using namespace cten_cudnn;
    Plan& p = plan_for(s, tf32);
    const float one = 1.f, zero = 0.f;
    check(cudnnConvolutionBackwardFilter(handle(), &one, p.x, x, p.y, dy, p.conv, p.bwd_filter,
                                         workspace(p.bwd_filter_bytes), p.bwd_filter_bytes, &zero, p.w, dw),
          "cudnnConvolutionBackwardFilter");
}
