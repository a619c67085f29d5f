// The new mount API (fsopen, fspick, fsconfig, fsmount, move_mount,
// open_tree, mount_setattr): mounts are built and attached through fds.
#pragma once
#include <cstdint>
#include <string>

#include "result.h"

namespace strata {

// Every fd made here is close-on-exec.
Failure FsOpen(const std::string& fstype, Fd& context);

// One fsconfig(2) command. `key` and `value` may be null as the command
// requires. On failure `kernel_log` holds the messages the filesystem queued on
// the context ("e overlay: ...", joined by "; "): far more than errno says.
Failure FsConfig(int context, unsigned cmd, const char* key, const char* value,
                 int aux, std::string& kernel_log);

Failure FsMount(int context, unsigned attr_flags, Fd& mount,
                std::string& kernel_log);

Failure MoveMount(int from_dirfd, const std::string& from_path, int to_dirfd,
                  const std::string& to_path, unsigned flags);

Failure OpenTree(int dirfd, const std::string& path, unsigned flags, Fd& tree);

// A context for reconfiguring the superblock mounted at dirfd/path.
Failure FsPick(int dirfd, const std::string& path, unsigned flags, Fd& context);

Failure MountSetattr(int dirfd, const std::string& path, unsigned flags,
                     uint64_t attr_set, uint64_t attr_clr, uint64_t propagation,
                     uint64_t userns_fd);

// Drains the message queue of a filesystem context fd.
std::string ReadFsContextLog(int context);

}  // namespace strata
