// Small helpers shared by the tar parser (tar.cc) and applier (tar_apply.cc).
#pragma once
#include <cstdint>
#include <string>

namespace strata {
namespace tar_internal {

// Zero bytes that pad `size` bytes of data to a 512-byte block.
inline uint64_t PaddingFor(uint64_t size) { return (512 - size % 512) % 512; }

// The magic link to an open fd, to reach it by path (setxattr, readlink).
inline std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// parent/name, or name alone at the root ("").
inline std::string Join(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "/" + name;
}

}  // namespace tar_internal
}  // namespace strata
