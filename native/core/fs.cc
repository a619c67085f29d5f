#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <iterator>

namespace strata {

Failure OpenNonBlocking(const std::string& path, int flags, Fd& out, struct stat& st) {
  Fd fd(open(path.c_str(), flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!fd.valid()) return Fail(errno, "open", path);
  if (fstat(fd.get(), &st) != 0) return Fail(errno, "fstat", path);
  int status = fcntl(fd.get(), F_GETFL);
  if (status < 0 || fcntl(fd.get(), F_SETFL, status & ~O_NONBLOCK) != 0)
    return Fail(errno, "fcntl", path);
  out = std::move(fd);
  return Ok();
}

Failure GetXattr(const std::string& path, const std::string& name,
                 std::vector<uint8_t>& value) {
  // The value can grow between asking its size and reading it: retry on ERANGE.
  for (;;) {
    ssize_t size = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) return Fail(errno, "lgetxattr", path);
    value.resize(static_cast<size_t>(size));
    if (size == 0) return Ok();
    ssize_t got = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (got >= 0) {
      value.resize(static_cast<size_t>(got));
      return Ok();
    }
    if (errno != ERANGE) return Fail(errno, "lgetxattr", path);
  }
}

Failure SetXattr(const std::string& path, const std::string& name,
                 const uint8_t* value, size_t size, XattrMode mode) {
  int flags = mode == XattrMode::kCreate    ? XATTR_CREATE
              : mode == XattrMode::kReplace ? XATTR_REPLACE
                                            : 0;
  if (lsetxattr(path.c_str(), name.c_str(), value, size, flags) != 0)
    return Fail(errno, "lsetxattr", path);
  return Ok();
}

Failure ListXattrs(const std::string& path, std::vector<std::string>& names) {
  std::vector<char> list;
  for (;;) {
    ssize_t size = llistxattr(path.c_str(), nullptr, 0);
    if (size < 0) return Fail(errno, "llistxattr", path);
    list.resize(static_cast<size_t>(size));
    if (size == 0) break;
    ssize_t got = llistxattr(path.c_str(), list.data(), list.size());
    if (got >= 0) {
      list.resize(static_cast<size_t>(got));
      break;
    }
    if (errno != ERANGE) return Fail(errno, "llistxattr", path);
  }
  names.clear();
  // The list is a sequence of NUL-terminated names.
  for (size_t start = 0; start < list.size();) {
    std::string name(&list[start]);
    start += name.size() + 1;
    names.push_back(std::move(name));
  }
  return Ok();
}

Failure RemoveXattr(const std::string& path, const std::string& name) {
  if (lremovexattr(path.c_str(), name.c_str()) != 0)
    return Fail(errno, "lremovexattr", path);
  return Ok();
}

Failure MakeNode(const std::string& path, NodeType type, mode_t perm,
                 unsigned major, unsigned minor) {
  mode_t format = 0;
  dev_t dev = 0;
  switch (type) {
    case NodeType::kFile: format = S_IFREG; break;
    case NodeType::kFifo: format = S_IFIFO; break;
    case NodeType::kSocket: format = S_IFSOCK; break;
    case NodeType::kChar: format = S_IFCHR; dev = makedev(major, minor); break;
    case NodeType::kBlock: format = S_IFBLK; dev = makedev(major, minor); break;
  }
  if (mknod(path.c_str(), format | (perm & 07777), dev) != 0)
    return Fail(errno, "mknod", path);
  return Ok();
}

Failure MakeWhiteout(const std::string& path) {
  return MakeNode(path, NodeType::kChar, 0, 0, 0);
}

Failure StatFs(const std::string& path, FsStats& out) {
  struct statfs st {};
  if (statfs(path.c_str(), &st) != 0) return Fail(errno, "statfs", path);
  out.type = static_cast<uint64_t>(st.f_type) & 0xffffffffu;
  out.block_size = static_cast<uint64_t>(st.f_bsize);
  out.blocks = st.f_blocks;
  out.blocks_free = st.f_bfree;
  out.blocks_available = st.f_bavail;
  out.files = st.f_files;
  out.files_free = st.f_ffree;
  out.name_max = static_cast<uint64_t>(st.f_namelen);
  // ST_VALID (0x20, not in the C library's headers) only says the kernel
  // filled f_flags in; it is not a mount flag.
  constexpr uint64_t kStValid = 0x20;
  out.flags = static_cast<uint64_t>(st.f_flags) & ~kStValid;
  return Ok();
}

const char* FsTypeName(uint64_t magic) {
  // Magics not in every <linux/magic.h>: ZFS and FUSE come from their sources.
  constexpr uint64_t kZfsMagic = 0x2fc12fc1;
  constexpr uint64_t kFuseMagic = 0x65735546;
  constexpr uint64_t kXfsMagic = 0x58465342;
  constexpr uint64_t kCifsMagic = 0xff534d42;
  constexpr uint64_t kSmb2Magic = 0xfe534d42;
  switch (magic) {
    case EXT4_SUPER_MAGIC: return "ext4";  // shared by ext2, ext3 and ext4
    case kXfsMagic: return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    case TMPFS_MAGIC: return "tmpfs";
    case RAMFS_MAGIC: return "ramfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlay";
    case kFuseMagic: return "fuse";
    case NFS_SUPER_MAGIC: return "nfs";
    case kCifsMagic:
    case kSmb2Magic: return "smb";
    case SQUASHFS_MAGIC: return "squashfs";
    case EROFS_SUPER_MAGIC_V1: return "erofs";
    case kZfsMagic: return "zfs";
    case F2FS_SUPER_MAGIC: return "f2fs";
    case ECRYPTFS_SUPER_MAGIC: return "ecryptfs";
    case PROC_SUPER_MAGIC: return "proc";
    case SYSFS_MAGIC: return "sysfs";
    case DEVPTS_SUPER_MAGIC: return "devpts";
    case CGROUP_SUPER_MAGIC: return "cgroup";
    case CGROUP2_SUPER_MAGIC: return "cgroup2";
    default: return "unknown";
  }
}

namespace {

constexpr const char* kProbeEntries[] = {"file", "dir", "link"};

// Lists `dir` with getdents64 and reports whether every entry had a type.
Failure AllEntriesTyped(int dirfd, const std::string& dir, bool& typed) {
  alignas(struct dirent64) char buf[4096];
  size_t seen = 0;
  typed = true;
  for (;;) {
    ssize_t n = getdents64(dirfd, buf, sizeof buf);
    if (n < 0) return Fail(errno, "getdents64", dir);
    if (n == 0) break;
    for (ssize_t pos = 0; pos < n;) {
      const auto* entry = reinterpret_cast<const struct dirent64*>(buf + pos);
      if (entry->d_type == DT_UNKNOWN) typed = false;
      seen++;
      pos += entry->d_reclen;
    }
  }
  // "." and ".." plus the probe entries: anything less means a broken listing.
  if (seen < 2 + std::size(kProbeEntries)) return Fail(EIO, "getdents64", dir);
  return Ok();
}

Failure ProbeDType(const std::string& tmp, bool& supported) {
  Fd dirfd(open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirfd.valid()) return Fail(errno, "open", tmp);
  Fd file(openat(dirfd.get(), "file", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!file.valid()) return Fail(errno, "openat", tmp + "/file");
  if (mkdirat(dirfd.get(), "dir", 0700) != 0) return Fail(errno, "mkdirat", tmp + "/dir");
  if (symlinkat("file", dirfd.get(), "link") != 0)
    return Fail(errno, "symlinkat", tmp + "/link");
  // A fresh open: btrfs lists only the entries that existed when the
  // directory was opened.
  Fd listing(open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing.valid()) return Fail(errno, "open", tmp);
  return AllEntriesTyped(listing.get(), tmp, supported);
}

// Removes what ProbeDType made, whatever point it reached.
Failure RemoveProbe(const std::string& tmp) {
  for (const char* name : kProbeEntries) {
    std::string path = tmp + "/" + name;
    int flags = std::string(name) == "dir" ? AT_REMOVEDIR : 0;
    if (unlinkat(AT_FDCWD, path.c_str(), flags) != 0 && errno != ENOENT)
      return Fail(errno, "unlinkat", path);
  }
  if (rmdir(tmp.c_str()) != 0) return Fail(errno, "rmdir", tmp);
  return Ok();
}

}  // namespace

Failure SupportsDType(const std::string& dir, bool& supported) {
  std::string pattern = dir + "/.strata-dtype-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  if (mkdtemp(name.data()) == nullptr) return Fail(errno, "mkdtemp", dir);
  std::string tmp = name.data();
  Failure probe = ProbeDType(tmp, supported);
  Failure cleanup = RemoveProbe(tmp);
  return probe ? probe : cleanup;
}

}  // namespace strata
