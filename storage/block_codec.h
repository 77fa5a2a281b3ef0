// Compression of a block's D copy (DESIGN §3 policies, Policy::compression): lossy,
// opt-in per namespace, lossless (kRaw) by default. G and H always hold raw blocks;
// the BlockStore encodes when it writes a block to D and decodes when it reads it
// back. The slot header's encoding byte records what a D payload is, so blocks
// written under an earlier policy still decode.
//
// A block is K[kv_heads][block_tokens][head_dim] then V[...] of model.dtype; each
// half is quantized with kernels/quant.h (CPU backend) as a tensor of shape
// [kv_heads][block_tokens][head_dim]:
//   kInt8   K: int8 asymmetric, per-channel groups of `group` tokens;
//           V: int8 asymmetric, per-token groups of `group` channels
//   kKivi2  K: 2-bit asymmetric per-channel groups of `group` tokens (KIVI keys),
//           V: 2-bit asymmetric per-token groups of `group` channels (KIVI values)
// Keys per channel (KIVI's observation: keys have large fixed channels) cut the
// attention output error of int8 about 3x at the same size against per-token
// groups (storage_block_codec_test prints the figures).
// Encoded payload (little-endian):
//   [0, 32)               EncodedBlockHeader (magic, version, encoding, dtype, shape,
//                         group, bytes of each half)
//   [32, 32 + k_bytes)    K packed as kernels/quant.h lays it out
//   [.., + v_bytes)       V packed likewise
// The D slot's payload checksum covers all of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"
#include "storage/policy.h"
#include "storage/tier.h"

namespace tierkv::storage {

inline constexpr size_t kEncodedBlockHeaderBytes = 32;

// Bytes of the encoded payload of one block (header included). kInvalidArgument for
// kNone, a bad group or a model the quantizer refuses.
Result<size_t> EncodedBlockBytes(const ModelSpec& model, Compression compression, uint32_t group);

// Encodes block (model.BlockBytes() bytes) into *out and sets *encoding. When the
// encoded form would not be smaller (or compression is kNone) *out is left empty
// and *encoding is kRaw: store the block as it is. kInvalidArgument on bad sizes.
Status EncodeBlock(const ModelSpec& model, Compression compression, uint32_t group, std::span<const std::byte> block,
                   std::vector<std::byte>* out, PayloadEncoding* encoding);

// Decodes an encoded payload into block (model.BlockBytes() bytes). payload must be
// 4-byte aligned. kCorruption when the payload does not describe this model's block
// in `encoding` (wrong magic, shape, sizes); kInvalidArgument for kRaw or bad sizes.
Status DecodeBlock(const ModelSpec& model, PayloadEncoding encoding, std::span<const std::byte> payload,
                   std::span<std::byte> block);

}  // namespace tierkv::storage
