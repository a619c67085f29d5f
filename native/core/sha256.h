// SHA-256 through the OpenSSL that Node itself links and exports (its headers
// ship with Node's), at OpenSSL's speed (SHA-NI or AVX2), with no crypto
// library of our own. The low-level interface, unlike EVP, exposes the
// chaining state, so a hash can be checkpointed and resumed (digest_chain.h).
#pragma once
#include <openssl/sha.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace strata {

class Sha256 {
 public:
  static constexpr size_t kStateSize = 32;
  static constexpr size_t kBlockSize = 64;

  Sha256();
  // Continues a hash whose first `bytes_before` bytes (a multiple of 64)
  // left `state` (as State() wrote it).
  Sha256(const uint8_t* state, uint64_t bytes_before);

  void Update(const uint8_t* data, size_t size);
  uint64_t total() const { return total_; }
  // The chaining state, big-endian; only at a block boundary (total % 64 == 0).
  void State(uint8_t* out) const;
  // The 32 digest bytes; no update afterwards.
  void Final(uint8_t* out);
  // "sha256:<64 hex digits>"; no update afterwards.
  std::string Digest();

 private:
  SHA256_CTX ctx_;
  uint64_t total_;
};

}  // namespace strata
