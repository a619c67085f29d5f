#include "digest_chain.h"

#include <algorithm>

namespace strata {

void DigestChainBuilder::Update(const uint8_t* data, size_t size) {
  while (size > 0) {
    // A boundary's state is recorded only once more bytes follow it: the
    // stream's end is not a checkpoint.
    if (at_boundary_) {
      uint8_t state[Sha256::kStateSize];
      hash_.State(state);
      states_.append(reinterpret_cast<const char*>(state), sizeof state);
      at_boundary_ = false;
    }
    uint64_t to_boundary = kInterval - hash_.total() % kInterval;
    size_t take = static_cast<size_t>(std::min<uint64_t>(size, to_boundary));
    hash_.Update(data, take);
    data += take;
    size -= take;
    at_boundary_ = hash_.total() % kInterval == 0;
  }
}

void DigestChainBuilder::Finish(std::string& digest, std::string& checkpoints) {
  checkpoints.clear();
  for (int i = 0; i < 4; i++) checkpoints += static_cast<char>((kInterval >> (8 * i)) & 0xff);
  checkpoints += states_;
  digest = hash_.Digest();
}

bool SegmentFits(uint64_t bytes_before, uint64_t size, bool resume, bool final) {
  return bytes_before % Sha256::kBlockSize == 0 && resume == (bytes_before > 0) &&
         (final || (bytes_before + size) % Sha256::kBlockSize == 0);
}

Sha256 StartSegment(const uint8_t* state, uint64_t bytes_before) {
  return state ? Sha256(state, bytes_before) : Sha256();
}

void EndSegment(Sha256& hash, bool final, uint8_t* out) {
  if (final) hash.Final(out);
  else hash.State(out);
}

void HashSegment(const uint8_t* data, size_t size, const uint8_t* state,
                 uint64_t bytes_before, bool final, uint8_t* out) {
  Sha256 hash = StartSegment(state, bytes_before);
  hash.Update(data, size);
  EndSegment(hash, final, out);
}

}  // namespace strata
