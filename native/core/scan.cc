#include "scan.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "dir_stream.h"

namespace strata {
namespace {

Failure ScanDir(int parent, const std::string& name, const std::string& rel, const std::string& shown,
                std::vector<ScanEntry>& out) {
  Fd fd(openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return Fail(errno, "open", shown);
  int dirfd = fd.get();
  DirStream stream;
  if (Failure f = OpenDirStream(std::move(fd), shown, stream)) return f;
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    struct dirent* d = readdir(stream.get());
    if (d == nullptr) {
      if (errno != 0) return Fail(errno, "readdir", shown);
      break;
    }
    if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0) names.emplace_back(d->d_name);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& child : names) {
    ScanEntry entry;
    entry.path = rel.empty() ? child : rel + "/" + child;
    if (fstatat(dirfd, child.c_str(), &entry.st, AT_SYMLINK_NOFOLLOW) != 0)
      return Fail(errno, "lstat", shown + "/" + child);
    bool is_dir = S_ISDIR(entry.st.st_mode);
    out.push_back(std::move(entry));
    if (is_dir) {
      std::string path = out.back().path;  // a copy: `out` grows below
      if (Failure f = ScanDir(dirfd, child, path, shown + "/" + child, out)) return f;
    }
  }
  return Ok();
}

}  // namespace

Failure ScanTree(const std::string& root, std::vector<ScanEntry>& out) {
  return ScanDir(AT_FDCWD, root, "", root, out);
}

}  // namespace strata
