// SHA-256 checkpoints of a layer tar: the chaining state after every
// kInterval bytes, recorded while the tar is hashed at import. An export
// re-hashes the segments between checkpoints on several threads at once and
// checks each segment's end state against the next checkpoint and the last
// segment's digest against the DiffID. Those checks together hold exactly
// when the whole stream hashes to the DiffID: each segment starts from a
// state the segment before it was checked to end in.
//
// Serialized checkpoints: the interval (4 bytes, little endian), then one
// 32-byte state per interval boundary strictly inside the stream, in order.
#pragma once
#include <cstdint>
#include <string>

#include "sha256.h"

namespace strata {

// Hashes a stream fed in order, recording a checkpoint at each boundary.
class DigestChainBuilder {
 public:
  static constexpr uint32_t kInterval = 4u << 20;

  void Update(const uint8_t* data, size_t size);
  // "sha256:<hex>" of the stream and its checkpoints; no update afterwards.
  void Finish(std::string& digest, std::string& checkpoints);

 private:
  Sha256 hash_;
  std::string states_;
  bool at_boundary_ = false;  // total is a boundary whose state is not yet recorded
};

// Whether the `size` bytes that follow `bytes_before` bytes of a stream can
// be hashed as one segment: from the stream's start without a state, or from
// a 64-byte boundary with one, ending at a 64-byte boundary unless final.
bool SegmentFits(uint64_t bytes_before, uint64_t size, bool resume, bool final);

// A segment's hash, continuing from `state` after `bytes_before` bytes
// (nullptr: the stream's start); SegmentFits must hold.
Sha256 StartSegment(const uint8_t* state, uint64_t bytes_before);
// Writes the segment's end state, or with `final` the digest, to `out` (32 bytes).
void EndSegment(Sha256& hash, bool final, uint8_t* out);

// StartSegment, `size` bytes of `data`, EndSegment.
void HashSegment(const uint8_t* data, size_t size, const uint8_t* state,
                 uint64_t bytes_before, bool final, uint8_t* out);

}  // namespace strata
