// SHA-256 through the OpenSSL that Node itself links and exports (its headers
// ship with Node's), at OpenSSL's speed (SHA-NI or AVX2), off the JS thread,
// with no crypto library of our own.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace strata {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(const uint8_t* data, size_t size);
  // "sha256:<64 hex digits>"; no update afterwards.
  std::string Digest();

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace strata
