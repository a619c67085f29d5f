// Classic mount(2) and umount2(2), and whether a path is a mount's root.
#pragma once
#include <string>

#include "result.h"

namespace strata {

Failure Mount(const std::string& source, const std::string& target,
              const std::string& fstype, unsigned long flags,
              const std::string& data);

Failure Unmount(const std::string& target, int flags);

enum class MountRoot { kNo, kYes, kUnknown };

// Whether `path` (a final symlink not followed) is the root of a mount, from
// statx's STATX_ATTR_MOUNT_ROOT (Linux 5.8): one system call, where reading
// /proc/self/mountinfo takes time in proportion to the number of mounts.
// kUnknown where the kernel does not report the attribute; a path that does
// not exist is not a mount's root.
Failure IsMountRoot(const std::string& path, MountRoot& out);

}  // namespace strata
