#include "mount.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>

namespace strata {

Failure Mount(const std::string& source, const std::string& target,
              const std::string& fstype, unsigned long flags,
              const std::string& data) {
  const char* src = source.empty() ? nullptr : source.c_str();
  const char* type = fstype.empty() ? nullptr : fstype.c_str();
  const void* opts = data.empty() ? nullptr : data.c_str();
  if (mount(src, target.c_str(), type, flags, opts) != 0) {
    if (source.empty()) return Fail(errno, "mount", target);
    return Fail(errno, "mount", source, target);
  }
  return Ok();
}

Failure Unmount(const std::string& target, int flags) {
  if (umount2(target.c_str(), flags) != 0) return Fail(errno, "umount2", target);
  return Ok();
}

Failure IsMountRoot(const std::string& path, MountRoot& out) {
  struct statx st;
  if (statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, 0, &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      out = MountRoot::kNo;
      return Ok();
    }
    return Fail(errno, "statx", path);
  }
  if (!(st.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) {
    out = MountRoot::kUnknown;
  } else {
    out = (st.stx_attributes & STATX_ATTR_MOUNT_ROOT) ? MountRoot::kYes : MountRoot::kNo;
  }
  return Ok();
}

}  // namespace strata
