// The data-plane wire format shared by tierkvd and libtierkv (DESIGN §2, §5).
//
// A client opens a channel with the control op `open_channel`; the daemon creates a
// memfd laid out as:
//
//   [ChannelHeader, 4 KiB][request ring][completion ring][staging area]
//
// and passes it with SCM_RIGHTS on the reply. The client produces RingRequests and
// consumes RingCompletions (SpscRing, see shm_ring.h). Payloads (blocks, queries,
// token ids, block tables) live in the staging area at offsets the client names; the
// daemon checks every offset and length against the staging size before use and
// answers a bad descriptor with an error completion, never a crash.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/shm_ring.h"
#include "tierkv/types.h"

namespace tierkv::dp {

inline constexpr uint16_t kVersion = 1;
inline constexpr uint32_t kChannelMagic = 0x54434846;  // "TCHF"
inline constexpr size_t kHeaderBytes = 4096;

enum class Op : uint16_t {
  kNoop = 0,           // round trip only
  kPut = 1,            // store `count` blocks of (seq, layer, block...) from staging[offset, +length)
  kGet = 2,            // copy `count` blocks into staging[offset, +length)
  kRetrieve = 3,       // select blocks for (seq, layer) given a query at staging[offset]; see Retrieve
  kRelease = 4,        // release the lease `arg` taken by a Retrieve
  kCloseSequence = 5,  // drop the sequence's blocks (prefix blocks stay while shared)
  kLookupPrefix = 6,   // token ids at staging[offset] (`count` int32): how many leading tokens are cached
  kLoadPrefix = 7,     // make the cached prefix of those tokens the first blocks of `seq`
  kRetrieveBatch = 8,  // `count` sequences of one layer in one request; see RetrieveBatchEntry
  kAppend = 9,         // `count` tokens of (seq, layer) starting at token `arg` (K then V,
                       // [kv_heads][count][head_dim] each) into the open last block; gaps refused
  kAcquire = 10,       // pin blocks [block, block + count) of (seq, layer) where they are (a zero-copy
                       // Get): their table entries to staging[offset, +length), a lease as Retrieve's;
                       // arg != 0: a lease of this channel released first (a reader's previous one)
  kAcquireBatch = 11,  // Acquire for `count` sequences of one layer in one request; see AcquireBatchEntry
  kPutBatch = 12,      // Put for `count` sequences of one layer in one request; see PutBatchEntry
};
// The highest op this build serves (ProcessRequest refuses those above it).
inline constexpr Op kLastOp = Op::kPutBatch;

// One request. 64 bytes, trivially copyable, versioned.
struct RingRequest {
  uint16_t version;  // kVersion
  Op op;
  uint32_t flags;
  uint64_t tag;      // chosen by the client, echoed in the completion
  uint64_t seq;      // sequence id
  uint32_t layer;
  uint32_t block;    // first block index
  uint32_t count;    // blocks (put/get), top-k budget in blocks (retrieve), tokens (prefix)
  uint32_t aux;      // op-specific (retrieve: recent-window blocks, 0 = the namespace policy's)
  uint64_t offset;   // staging offset of the input or output
  uint64_t length;   // bytes at offset
  uint64_t arg;      // op-specific (put: content hash of a full prefix block or 0; release: lease;
                     // retrieve batch: offset of the table area from `offset`)
};
static_assert(sizeof(RingRequest) == 64 && std::is_trivially_copyable_v<RingRequest>);

// Request flags.
inline constexpr uint32_t kFlagPrefixBlock = 1u << 0;  // put: arg is the block's content hash
// retrieve on a channel opened with a GPU (see daemon/gpu_exchange.h): offset and
// length name a range of the channel's device exchange buffer instead of staging;
// the query there is ordered by the worker's IPC event, the block table written
// after it by the daemon's IPC event.
inline constexpr uint32_t kFlagGpu = 1u << 1;

// One completion. 32 bytes.
struct RingCompletion {
  uint64_t tag;
  uint8_t status;     // tierkv::StatusCode
  uint8_t detail;     // Detail: which field of the request was refused
  uint16_t reserved;
  uint32_t count;     // blocks moved / selected, tokens cached
  uint64_t value;     // op-specific (retrieve: lease id)
  uint64_t value2;    // op-specific (retrieve: bytes of the block table)
};
static_assert(sizeof(RingCompletion) == 32 && std::is_trivially_copyable_v<RingCompletion>);

// Why a request was refused (RingCompletion::detail), for messages on the client side.
enum class Detail : uint8_t {
  kNone = 0, kVersion, kOp, kFlags, kRange /* offset/length outside staging */, kLength /* wrong payload size */,
  kLayer, kBlock, kCount, kSequence, kLease, kNotFound, kNoSpace, kInternal,
  kOwner /* the sequence belongs to another uid */, kBusy /* the block is pinned by a lease */,
  kCorruption /* a stored copy failed its checksum */,
  kQuery /* Retrieve: the query is not num_q_heads * head_dim finite f32 values (+ room for the table) */,
  kNoBlocks /* Retrieve: nothing stored for this (sequence, layer) */,
  kNamespaceDeleted /* the channel's namespace was deleted (tierkvctl delete-namespace --force) */,
  kBudget /* Retrieve: the budget is below the sinks + recent window the policy always keeps */,
  kGap /* Append: the first token is not where the layer ends; the completion's value is the one expected */,
};
const char* DetailName(Detail d);

// At the start of the channel memfd. Written once by the daemon before the fd is sent.
struct ChannelHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t reserved;
  uint32_t request_capacity;
  uint32_t completion_capacity;
  uint64_t request_offset;
  uint64_t completion_offset;
  uint64_t staging_offset;
  uint64_t staging_bytes;
  uint64_t total_bytes;
};
static_assert(std::is_trivially_copyable_v<ChannelHeader> && sizeof(ChannelHeader) <= kHeaderBytes);

// Computes the layout for the given sizes (capacities: powers of two).
ChannelHeader Layout(uint32_t request_capacity, uint32_t completion_capacity, uint64_t staging_bytes);
// True when [offset, offset + length) lies inside a staging area of `staging` bytes
// (overflow-safe).
inline bool InStaging(uint64_t offset, uint64_t length, uint64_t staging) {
  return offset <= staging && length <= staging - offset;
}

// Retrieve: the query at staging[offset] is f32 [num_q_heads][head_dim]. The block
// table written back at staging[offset + query bytes] is `count` entries of
// BlockTableEntry (public API, tierkv/types.h: block, tier, offset; 16 bytes).
using BlockTableEntry = ::tierkv::BlockTableEntry;

// RetrieveBatch (docs/decisions/0011-batched-retrieve.md): one request selects for
// `count` sequences of one layer (seq is unused). The region staging[offset, +length)
// holds, at region-relative offsets:
//
//   [0, 32 * count)             RetrieveBatchEntry[count]   written by the client
//   [32 * count, 64 * count)    RetrieveBatchResult[count]  written by the daemon
//   queries                     anywhere at or after 64 * count (entry.query_offset)
//   [arg, length)               the table area: the daemon packs each served
//                               sequence's BlockTableEntry run there, in entry
//                               order; it must hold sum(budget) entries
//
// Every offset is checked against the region before anything is selected; a bad
// region, count or table area refuses the whole batch. A bad entry (unknown layer
// blocks, wrong budget, a non-finite query, another owner's sequence, no room left
// in a tier) fails only that entry: its result carries status and detail, the
// others are served. The completion: count = sequences served, value = the batch
// lease (0 when none was served; one kRelease frees every sequence's pins),
// value2 = table entries written.
struct RetrieveBatchEntry {
  uint64_t seq;
  uint32_t budget;        // top-k in blocks, sinks and recent window included (1..2^20)
  uint32_t window;        // recent-window blocks, 0 = the namespace policy's (<= 2^20)
  uint64_t query_offset;  // region-relative: f32 [num_q_heads][head_dim]
  uint64_t reserved;      // 0
};
static_assert(sizeof(RetrieveBatchEntry) == 32 && std::is_trivially_copyable_v<RetrieveBatchEntry>);

struct RetrieveBatchResult {
  uint8_t status;        // tierkv::StatusCode of this sequence
  uint8_t detail;        // Detail when status != kOk
  uint16_t reserved;
  uint32_t count;        // table entries of this sequence
  uint64_t table_index;  // first entry, in BlockTableEntry units from the table area's start
  uint32_t missing;      // defer mode: selected but not resident
  uint32_t triggered;    // 1: selected afresh, 0: the trigger reused the last selection
  uint64_t reserved2;
};
static_assert(sizeof(RetrieveBatchResult) == 32 && std::is_trivially_copyable_v<RetrieveBatchResult>);

// The region's fixed part for `count` sequences (entries, then results).
inline constexpr uint64_t BatchHeaderBytes(uint64_t count) {
  return count * (sizeof(RetrieveBatchEntry) + sizeof(RetrieveBatchResult));
}
// AcquireBatch (docs/decisions/0028-batched-acquire-and-put.md): Acquire for `count`
// sequences of one layer (seq is unused, block, aux and flags must be 0; arg != 0: a
// lease of this channel released first, as Acquire's). The region staging[offset,
// +length) holds:
//
//   [0, 32 * count)             AcquireBatchEntry[count]    written by the client
//   [32 * count, 64 * count)    RetrieveBatchResult[count]  written by the daemon (triggered: 0)
//   [64 * count, length)        the table area: each served sequence's run (per KV
//                               head namespace: a run per head), in entry order; it
//                               must hold sum(entry.count) * table heads entries
//
// A bad region, count or table area refuses the whole batch (nothing pinned; the
// lease named by arg is not released). A bad entry (count 0 or above 2^16, a range
// that wraps, an unknown block: kNotFound) fails only that entry and pins nothing
// of it. The completion: count = sequences served, value = the lease over every
// served sequence (0 when none), value2 = blocks still on D (defer-mode
// missing, 0 for kInPlace).
struct AcquireBatchEntry {
  uint64_t seq;
  uint32_t first;     // first block
  uint32_t count;     // blocks (1..2^16)
  uint64_t reserved;  // 0
  uint64_t reserved2; // 0
};
static_assert(sizeof(AcquireBatchEntry) == 32 && std::is_trivially_copyable_v<AcquireBatchEntry>);

// PutBatch (decision 0028): Put for `count` sequences of one layer (seq and arg are
// unused; block, aux and flags must be 0: no prefix blocks). The region
// staging[offset, +length):
//
//   [0, 32 * count)             PutBatchEntry[count]   written by the client
//   [32 * count, 64 * count)    PutBatchResult[count]  written by the daemon
//   payloads                    anywhere at or after 64 * count (entry.data_offset):
//                               entry.count blocks of BlockBytes each
//
// Each entry is one Put (one BlockStore::PutBlocks: under write-through its blocks
// share one D commit); a bad entry fails alone, its result saying how many of its
// blocks were stored before the failure. The completion: count = entries stored
// whole, value = 1 when every block of them is durable, value2 = blocks stored.
struct PutBatchEntry {
  uint64_t seq;
  uint32_t first;        // first block
  uint32_t count;        // blocks (1..2^16)
  uint64_t data_offset;  // region-relative
  uint64_t reserved;     // 0
};
static_assert(sizeof(PutBatchEntry) == 32 && std::is_trivially_copyable_v<PutBatchEntry>);

struct PutBatchResult {
  uint8_t status;         // tierkv::StatusCode of this entry
  uint8_t detail;         // Detail when status != kOk
  uint16_t reserved;
  uint32_t stored;        // blocks stored (all of them when status is kOk)
  uint32_t durable;       // 1: every stored block durable on D before the answer
  uint32_t deduplicated;  // blocks shared with a stored prefix block
  uint64_t reserved2[2];
};
static_assert(sizeof(PutBatchResult) == 32 && std::is_trivially_copyable_v<PutBatchResult>);
static_assert(sizeof(AcquireBatchEntry) + sizeof(RetrieveBatchResult) == 64 &&
              sizeof(PutBatchEntry) + sizeof(PutBatchResult) == 64);  // BatchHeaderBytes holds for all three

// Batch leases live in their own id space (top bit set), apart from single Retrieve's.
inline constexpr uint64_t kBatchLeaseBit = uint64_t{1} << 63;

}  // namespace tierkv::dp
