// A directory stream that owns its fd and closes on every path.
#pragma once
#include <dirent.h>
#include <errno.h>

#include <memory>
#include <string>

#include "result.h"

namespace strata {

struct DirCloser {
  void operator()(DIR* dir) const { closedir(dir); }
};
using DirStream = std::unique_ptr<DIR, DirCloser>;

// Turns `fd` into a directory stream; `fd` is closed on failure too.
inline Failure OpenDirStream(Fd fd, const std::string& path, DirStream& out) {
  DIR* dir = fdopendir(fd.get());
  if (dir == nullptr) return Fail(errno, "fdopendir", path);
  fd.release();
  out.reset(dir);
  return Ok();
}

}  // namespace strata
