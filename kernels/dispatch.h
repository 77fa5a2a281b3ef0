// One include for every kernel family of tierkv_kernels. Each kernel has a CPU
// reference (Backend::kCpu) and a CUDA implementation (Backend::kCuda) with the
// same signature; see backend.h. No CUDA types cross these headers.
#pragma once

#include "kernels/attention.h"  // DecodeAttention over a block table
#include "kernels/backend.h"    // Backend, CheckBackend
#include "kernels/gather.h"     // Gather (H->G) / Scatter (G->H) of blocks
#include "kernels/gpu_runtime.h"  // buffers, streams, events, IPC, copies
#include "kernels/half.h"       // f16/bf16 conversions
#include "kernels/quant.h"      // int8 / 2-bit KIVI quantization for the D tier
#include "kernels/score.h"      // block scoring (min/max, mean, VQ LUT)
#include "kernels/select_batch.h"  // scoring + top-k for a batch of sequences
#include "kernels/summary.h"    // min/max/mean summaries at put time
#include "kernels/topk.h"       // top-k selection with always-kept blocks
