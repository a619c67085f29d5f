// The SHA256_* calls are deprecated in OpenSSL 3 in favour of EVP, which
// cannot hand out or take a chaining state; they remain exported.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "sha256.h"

namespace strata {

Sha256::Sha256() : total_(0) { SHA256_Init(&ctx_); }

Sha256::Sha256(const uint8_t* state, uint64_t bytes_before) : total_(bytes_before) {
  SHA256_Init(&ctx_);
  for (int i = 0; i < 8; i++) {
    const uint8_t* p = state + 4 * i;
    ctx_.h[i] = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  }
  // OpenSSL counts bits in two 32-bit halves.
  uint64_t bits = bytes_before * 8;
  ctx_.Nl = static_cast<uint32_t>(bits);
  ctx_.Nh = static_cast<uint32_t>(bits >> 32);
}

void Sha256::Update(const uint8_t* data, size_t size) {
  SHA256_Update(&ctx_, data, size);
  total_ += size;
}

void Sha256::State(uint8_t* out) const {
  for (int i = 0; i < 8; i++) {
    out[4 * i] = static_cast<uint8_t>(ctx_.h[i] >> 24);
    out[4 * i + 1] = static_cast<uint8_t>(ctx_.h[i] >> 16);
    out[4 * i + 2] = static_cast<uint8_t>(ctx_.h[i] >> 8);
    out[4 * i + 3] = static_cast<uint8_t>(ctx_.h[i]);
  }
}

void Sha256::Final(uint8_t* out) { SHA256_Final(out, &ctx_); }

std::string Sha256::Digest() {
  uint8_t digest[kStateSize];
  Final(digest);
  static const char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (uint8_t byte : digest) {
    out += kHex[byte >> 4];
    out += kHex[byte & 15];
  }
  return out;
}

}  // namespace strata
