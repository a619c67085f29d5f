#include "mount_api.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

namespace strata {

Failure FsOpen(const std::string& fstype, Fd& context) {
  int fd = fsopen(fstype.c_str(), FSOPEN_CLOEXEC);
  if (fd < 0) return Fail(errno, "fsopen", fstype);
  context = Fd(fd);
  return Ok();
}

std::string ReadFsContextLog(int context) {
  std::string log;
  // Each read() returns one message; ENODATA ends the queue. The kernel keeps
  // at most 8, so the loop is short.
  char message[1024];
  for (;;) {
    ssize_t n = read(context, message, sizeof message);
    if (n <= 0) break;
    std::string line(message, static_cast<size_t>(n));
    while (!line.empty() && line.back() == '\n') line.pop_back();
    if (!log.empty()) log += "; ";
    log += line;
  }
  return log;
}

Failure FsConfig(int context, unsigned cmd, const char* key, const char* value,
                 int aux, std::string& kernel_log) {
  if (fsconfig(context, cmd, key, value, aux) != 0) {
    int err = errno;
    kernel_log = ReadFsContextLog(context);
    return Fail(err, "fsconfig", key ? key : "");
  }
  return Ok();
}

Failure FsMount(int context, unsigned attr_flags, Fd& mount,
                std::string& kernel_log) {
  int fd = fsmount(context, FSMOUNT_CLOEXEC, attr_flags);
  if (fd < 0) {
    int err = errno;
    kernel_log = ReadFsContextLog(context);
    return Fail(err, "fsmount");
  }
  mount = Fd(fd);
  return Ok();
}

Failure MoveMount(int from_dirfd, const std::string& from_path, int to_dirfd,
                  const std::string& to_path, unsigned flags) {
  if (move_mount(from_dirfd, from_path.c_str(), to_dirfd, to_path.c_str(),
                 flags) != 0)
    return Fail(errno, "move_mount", from_path, to_path);
  return Ok();
}

Failure OpenTree(int dirfd, const std::string& path, unsigned flags, Fd& tree) {
  int fd = open_tree(dirfd, path.c_str(), flags | OPEN_TREE_CLOEXEC);
  if (fd < 0) return Fail(errno, "open_tree", path);
  tree = Fd(fd);
  return Ok();
}

Failure FsPick(int dirfd, const std::string& path, unsigned flags,
              Fd& context) {
  int fd = fspick(dirfd, path.c_str(), flags | FSPICK_CLOEXEC);
  if (fd < 0) return Fail(errno, "fspick", path);
  context = Fd(fd);
  return Ok();
}

Failure MountSetattr(int dirfd, const std::string& path, unsigned flags,
                     uint64_t attr_set, uint64_t attr_clr, uint64_t propagation,
                     uint64_t userns_fd) {
  struct mount_attr attr = {};
  attr.attr_set = attr_set;
  attr.attr_clr = attr_clr;
  attr.propagation = propagation;
  attr.userns_fd = userns_fd;
  if (mount_setattr(dirfd, path.c_str(), flags, &attr, sizeof attr) != 0)
    return Fail(errno, "mount_setattr", path);
  return Ok();
}

}  // namespace strata
