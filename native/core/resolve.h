// Opening a path inside a directory tree as if the tree were "/": the mount
// targets of a container are resolved inside its root filesystem, so that a
// symlink in an image cannot point a mount at the host.
#pragma once
#include <string>

#include "result.h"

namespace strata {

// What a missing last component is created as.
enum class TargetKind { kDirectory, kFile };

// Opens `path` (as seen from inside `root`) as an O_PATH, close-on-exec fd,
// resolving symlinks and ".." as if `root` were "/" (openat2 RESOLVE_IN_ROOT,
// no magic links). With `create`, missing components are made inside the tree
// (mode 0755 directories; the last one of `kind`, a file being empty, 0644),
// each relative to its parent's fd, never through a path from outside; a
// dangling symlink on the way is followed, inside the tree, to what it names.
Failure OpenInTree(const std::string& root, const std::string& path, bool create,
                   TargetKind kind, Fd& out);

}  // namespace strata
