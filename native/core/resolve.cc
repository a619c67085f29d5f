#include "resolve.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "tar_split.h"

namespace strata {
namespace {

// As the kernel's limit on symlinks followed in one lookup.
constexpr int kMaxLinks = 40;

std::vector<std::string> Components(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (!part.empty() && part != ".") parts.push_back(part);
    start = end + 1;
  }
  return parts;
}

}  // namespace

Failure OpenInTree(const std::string& root, const std::string& path, bool create,
                   TargetKind kind, Fd& out) {
  Fd root_fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return Fail(errno, "open", root);
  std::vector<std::string> parts = Components(path);
  std::string prefix;
  int links = 0;
  for (size_t i = 0; i < parts.size(); i++) {
    std::string next = prefix.empty() ? parts[i] : prefix + "/" + parts[i];
    Fd fd(OpenInRoot(root_fd.get(), next, O_PATH));
    if (!fd.valid()) {
      if (errno != ENOENT || !create) return Fail(errno, "openat2", "/" + next);
      Fd parent(OpenInRoot(root_fd.get(), prefix, O_PATH | O_DIRECTORY));
      if (!parent.valid()) return Fail(errno, "openat2", "/" + prefix);
      char link[PATH_MAX];
      ssize_t length = readlinkat(parent.get(), parts[i].c_str(), link, sizeof link);
      if (length >= 0) {
        // A dangling symlink: create what it names, inside the tree, so
        // restart the walk on the link's text plus the rest of the path.
        if (++links > kMaxLinks) return Fail(ELOOP, "openat2", "/" + next);
        std::string target(link, static_cast<size_t>(length));
        std::vector<std::string> rest(parts.begin() + static_cast<long>(i) + 1, parts.end());
        parts = Components(target[0] == '/' ? target : prefix + "/" + target);
        parts.insert(parts.end(), rest.begin(), rest.end());
        prefix.clear();
        i = static_cast<size_t>(-1);
        continue;
      }
      bool last = i + 1 == parts.size();
      if (last && kind == TargetKind::kFile) {
        Fd file(openat(parent.get(), parts[i].c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (!file.valid() && errno != EEXIST) return Fail(errno, "openat", "/" + next);
      } else if (mkdirat(parent.get(), parts[i].c_str(), 0755) != 0 && errno != EEXIST) {
        return Fail(errno, "mkdirat", "/" + next);
      }
      // Opened again by the same rules: whatever now exists there (ours, or
      // what a racing creator made) is resolved inside the tree.
      fd = Fd(OpenInRoot(root_fd.get(), next, O_PATH));
      if (!fd.valid()) return Fail(errno, "openat2", "/" + next);
    }
    prefix = next;
    if (i + 1 == parts.size()) out = std::move(fd);
  }
  if (parts.empty()) out = std::move(root_fd);
  return Ok();
}

}  // namespace strata
