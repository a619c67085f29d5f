#include "btrfs.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

#include "dir_stream.h"

namespace strata {
namespace {

Failure OpenDir(const std::string& path, Fd& out) {
  out = Fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!out.valid()) return Fail(errno, "open", path);
  return Ok();
}

// Opens `path` as the root of a btrfs subvolume. Other filesystems answer
// ENOTTY, as the ioctls would; a plain btrfs directory answers EINVAL.
Failure OpenSubvolume(const std::string& path, const char* syscall, Fd& out) {
  if (Failure f = OpenDir(path, out)) return f;
  struct statfs fs {};
  if (fstatfs(out.get(), &fs) != 0) return Fail(errno, "fstatfs", path);
  if (static_cast<uint64_t>(fs.f_type) != BTRFS_SUPER_MAGIC)
    return Fail(ENOTTY, syscall, path);
  struct stat st {};
  if (fstat(out.get(), &st) != 0) return Fail(errno, "fstat", path);
  if (st.st_ino != BTRFS_FIRST_FREE_OBJECTID) return Fail(EINVAL, syscall, path);
  return Ok();
}

// Splits `path` into its parent directory and last component, which the
// subvolume ioctls take as an fd and a name.
Failure SplitParent(const std::string& path, const char* syscall,
                    std::string& parent, std::string& name) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  parent = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
  name = slash == std::string::npos ? p : p.substr(slash + 1);
  if (name.empty() || name == "." || name == ".." || name == "/")
    return Fail(EINVAL, syscall, path);
  if (name.size() > BTRFS_SUBVOL_NAME_MAX) return Fail(ENAMETOOLONG, syscall, path);
  return Ok();
}

Failure GetFlags(int fd, const std::string& path, uint64_t& flags) {
  if (ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) != 0)
    return Fail(errno, "btrfs_subvol_getflags", path);
  return Ok();
}

Failure SetFlags(int fd, const std::string& path, uint64_t flags) {
  if (ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags) != 0)
    return Fail(errno, "btrfs_subvol_setflags", path);
  return Ok();
}

// Collects the subvolume roots below the directory `dir_fd` (not descending
// into them, nor into other mounts): a subvolume root is a directory with
// inode number 256.
Failure FindNestedSubvolumes(int dir_fd, const std::string& dir_path,
                             uint64_t mount_id, std::vector<std::string>& out) {
  // The stream takes its own fd: `dir_fd` stays open for statx and openat.
  Fd dup_fd(fcntl(dir_fd, F_DUPFD_CLOEXEC, 0));
  if (!dup_fd.valid()) return Fail(errno, "fcntl", dir_path);
  DirStream stream;
  if (Failure f = OpenDirStream(std::move(dup_fd), dir_path, stream)) return f;
  DIR* dir = stream.get();
  Failure failure;
  while (!failure) {
    errno = 0;
    struct dirent* entry = readdir(dir);
    if (entry == nullptr) {
      if (errno != 0) failure = Fail(errno, "readdir", dir_path);
      break;
    }
    if (entry->d_type != DT_DIR && entry->d_type != DT_UNKNOWN) continue;
    const char* name = entry->d_name;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
    std::string path = dir_path + "/" + name;
    struct statx stx {};
    if (statx(dir_fd, name, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO | STATX_MNT_ID,
              &stx) != 0) {
      failure = Fail(errno, "statx", path);
      break;
    }
    if (!S_ISDIR(stx.stx_mode) || stx.stx_mnt_id != mount_id) continue;
    if (stx.stx_ino == BTRFS_FIRST_FREE_OBJECTID) {
      out.push_back(path);
      continue;
    }
    Fd child(openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child.valid()) {
      failure = Fail(errno, "open", path);
      break;
    }
    failure = FindNestedSubvolumes(child.get(), path, mount_id, out);
  }
  return failure;
}

// SNAP_DESTROY_V2 (Linux 5.7+), else the original SNAP_DESTROY.
Failure DestroyByName(const std::string& path) {
  std::string parent;
  std::string name;
  if (Failure f = SplitParent(path, "btrfs_snap_destroy", parent, name)) return f;
  Fd parent_fd;
  if (Failure f = OpenDir(parent, parent_fd)) return f;
  struct btrfs_ioctl_vol_args_v2 v2 {};
  memcpy(v2.name, name.data(), name.size());
  if (ioctl(parent_fd.get(), BTRFS_IOC_SNAP_DESTROY_V2, &v2) == 0) return Ok();
  if (errno != ENOTTY) return Fail(errno, "btrfs_snap_destroy", path);
  struct btrfs_ioctl_vol_args v1 {};
  memcpy(v1.name, name.data(), name.size());
  if (ioctl(parent_fd.get(), BTRFS_IOC_SNAP_DESTROY, &v1) != 0)
    return Fail(errno, "btrfs_snap_destroy", path);
  return Ok();
}

// Destroys the subvolumes nested anywhere inside the subvolume `path`.
Failure DestroyNested(const std::string& path) {
  Fd fd;
  if (Failure f = OpenDir(path, fd)) return f;
  struct statx stx {};
  if (statx(fd.get(), "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) != 0)
    return Fail(errno, "statx", path);
  std::vector<std::string> nested;
  if (Failure f = FindNestedSubvolumes(fd.get(), path, stx.stx_mnt_id, nested)) return f;
  // Deleting a nested subvolume removes its entry here: needs a writable parent.
  uint64_t flags = 0;
  if (Failure f = GetFlags(fd.get(), path, flags)) return f;
  if (flags & BTRFS_SUBVOL_RDONLY) {
    if (Failure f = SetFlags(fd.get(), path, flags & ~BTRFS_SUBVOL_RDONLY)) return f;
  }
  fd = Fd();
  for (const std::string& child : nested) {
    if (Failure f = BtrfsDestroySubvolume(child)) return f;
  }
  return Ok();
}

Failure OpenAny(const std::string& path, Fd& out) {
  out = Fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!out.valid()) return Fail(errno, "open", path);
  return Ok();
}

// One item of the quota tree: (0, type, qgroup_id). ENOENT when absent.
Failure SearchQuotaItem(int fd, const std::string& path, uint32_t type,
                        uint64_t qgroup_id, std::vector<uint8_t>& item) {
  struct btrfs_ioctl_search_args args {};
  args.key.tree_id = BTRFS_QUOTA_TREE_OBJECTID;
  args.key.min_type = args.key.max_type = type;
  args.key.min_offset = args.key.max_offset = qgroup_id;
  args.key.max_transid = UINT64_MAX;
  args.key.nr_items = 1;
  if (ioctl(fd, BTRFS_IOC_TREE_SEARCH, &args) != 0)
    return Fail(errno, "btrfs_tree_search", path);
  if (args.key.nr_items == 0) return Fail(ENOENT, "btrfs_tree_search", path);
  struct btrfs_ioctl_search_header header {};
  memcpy(&header, args.buf, sizeof header);
  if (header.type != type || header.offset != qgroup_id ||
      sizeof header + header.len > sizeof args.buf)
    return Fail(ENOENT, "btrfs_tree_search", path);
  const uint8_t* data = reinterpret_cast<const uint8_t*>(args.buf) + sizeof header;
  item.assign(data, data + header.len);
  return Ok();
}

// Little-endian u64 field `index` of an on-disk item (missing fields read 0).
uint64_t ItemField(const std::vector<uint8_t>& item, size_t index) {
  uint64_t value = 0;
  if ((index + 1) * sizeof value > item.size()) return 0;
  memcpy(&value, item.data() + index * sizeof value, sizeof value);
  return le64toh(value);
}

}  // namespace

Failure BtrfsCreateSubvolume(const std::string& path) {
  std::string parent;
  std::string name;
  if (Failure f = SplitParent(path, "btrfs_subvol_create", parent, name)) return f;
  Fd parent_fd;
  if (Failure f = OpenDir(parent, parent_fd)) return f;
  struct btrfs_ioctl_vol_args args {};
  memcpy(args.name, name.data(), name.size());
  if (ioctl(parent_fd.get(), BTRFS_IOC_SUBVOL_CREATE, &args) != 0)
    return Fail(errno, "btrfs_subvol_create", path);
  return Ok();
}

Failure BtrfsSnapshot(const std::string& source, const std::string& dest,
                      bool read_only) {
  // The kernel would snapshot the subvolume containing a plain directory;
  // callers asking for a directory's snapshot have made a mistake.
  Fd source_fd;
  if (Failure f = OpenSubvolume(source, "btrfs_snap_create", source_fd)) {
    f.dest = dest;
    return f;
  }
  std::string parent;
  std::string name;
  if (Failure f = SplitParent(dest, "btrfs_snap_create", parent, name)) return f;
  Fd parent_fd;
  if (Failure f = OpenDir(parent, parent_fd)) return f;
  struct btrfs_ioctl_vol_args_v2 args {};
  args.fd = source_fd.get();
  args.flags = read_only ? BTRFS_SUBVOL_RDONLY : 0;
  memcpy(args.name, name.data(), name.size());
  if (ioctl(parent_fd.get(), BTRFS_IOC_SNAP_CREATE_V2, &args) != 0)
    return Fail(errno, "btrfs_snap_create", source, dest);
  return Ok();
}

Failure BtrfsDestroySubvolume(const std::string& path) {
  {
    Fd fd;
    if (Failure f = OpenSubvolume(path, "btrfs_snap_destroy", fd)) return f;
    // Refused by the kernel, but only after DestroyNested would have emptied it.
    uint64_t id = 0;
    if (Failure f = BtrfsSubvolumeId(path, id)) return f;
    if (id == BTRFS_FS_TREE_OBJECTID) return Fail(EPERM, "btrfs_snap_destroy", path);
  }
  // Most subvolumes hold no others: walk the tree only when the kernel says
  // the subvolume must be emptied of them first.
  Failure failure = DestroyByName(path);
  if (failure.err != ENOTEMPTY) return failure;
  if (Failure f = DestroyNested(path)) return f;
  return DestroyByName(path);
}

Failure BtrfsIsSubvolume(const std::string& path, bool& is_subvolume) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return Fail(errno, "stat", path);
  is_subvolume = false;
  if (!S_ISDIR(st.st_mode) || st.st_ino != BTRFS_FIRST_FREE_OBJECTID) return Ok();
  struct statfs fs {};
  if (statfs(path.c_str(), &fs) != 0) return Fail(errno, "statfs", path);
  is_subvolume = static_cast<uint64_t>(fs.f_type) == BTRFS_SUPER_MAGIC;
  return Ok();
}

Failure BtrfsSubvolumeId(const std::string& path, uint64_t& id) {
  Fd fd;
  if (Failure f = OpenAny(path, fd)) return f;
  struct btrfs_ioctl_ino_lookup_args args {};
  args.objectid = BTRFS_FIRST_FREE_OBJECTID;
  if (ioctl(fd.get(), BTRFS_IOC_INO_LOOKUP, &args) != 0)
    return Fail(errno, "btrfs_ino_lookup", path);
  id = args.treeid;
  return Ok();
}

Failure BtrfsGetReadOnly(const std::string& path, bool& read_only) {
  Fd fd;
  if (Failure f = OpenSubvolume(path, "btrfs_subvol_getflags", fd)) return f;
  uint64_t flags = 0;
  if (Failure f = GetFlags(fd.get(), path, flags)) return f;
  read_only = (flags & BTRFS_SUBVOL_RDONLY) != 0;
  return Ok();
}

Failure BtrfsSetReadOnly(const std::string& path, bool read_only) {
  Fd fd;
  if (Failure f = OpenSubvolume(path, "btrfs_subvol_setflags", fd)) return f;
  uint64_t flags = 0;
  if (Failure f = GetFlags(fd.get(), path, flags)) return f;
  uint64_t wanted = read_only ? flags | BTRFS_SUBVOL_RDONLY : flags & ~BTRFS_SUBVOL_RDONLY;
  if (wanted == flags) return Ok();
  return SetFlags(fd.get(), path, wanted);
}

Failure BtrfsSync(const std::string& path) {
  Fd fd;
  if (Failure f = OpenAny(path, fd)) return f;
  if (ioctl(fd.get(), BTRFS_IOC_SYNC, nullptr) != 0) return Fail(errno, "btrfs_sync", path);
  return Ok();
}

Failure BtrfsQuotaEnable(const std::string& path, bool enable) {
  Fd fd;
  if (Failure f = OpenAny(path, fd)) return f;
  struct btrfs_ioctl_quota_ctl_args args {};
  args.cmd = enable ? BTRFS_QUOTA_CTL_ENABLE : BTRFS_QUOTA_CTL_DISABLE;
  if (ioctl(fd.get(), BTRFS_IOC_QUOTA_CTL, &args) != 0)
    return Fail(errno, "btrfs_quota_ctl", path);
  return Ok();
}

Failure BtrfsQgroupCreate(const std::string& path, uint64_t qgroup_id) {
  Fd fd;
  if (Failure f = OpenAny(path, fd)) return f;
  struct btrfs_ioctl_qgroup_create_args args {};
  args.create = 1;
  args.qgroupid = qgroup_id;
  if (ioctl(fd.get(), BTRFS_IOC_QGROUP_CREATE, &args) != 0)
    return Fail(errno, "btrfs_qgroup_create", path);
  return Ok();
}

Failure BtrfsQgroupLimit(const std::string& path, uint64_t qgroup_id,
                         uint64_t max_referenced, uint64_t max_exclusive) {
  Fd fd;
  if (Failure f = OpenAny(path, fd)) return f;
  // The kernel clears a limit whose value is all ones.
  constexpr uint64_t kClear = UINT64_MAX;
  struct btrfs_ioctl_qgroup_limit_args args {};
  args.qgroupid = qgroup_id;
  args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER | BTRFS_QGROUP_LIMIT_MAX_EXCL;
  args.lim.max_rfer = max_referenced == 0 ? kClear : max_referenced;
  args.lim.max_excl = max_exclusive == 0 ? kClear : max_exclusive;
  if (ioctl(fd.get(), BTRFS_IOC_QGROUP_LIMIT, &args) != 0)
    return Fail(errno, "btrfs_qgroup_limit", path);
  return Ok();
}

Failure BtrfsQuotaRescan(const std::string& path, bool wait) {
  Fd fd;
  if (Failure f = OpenAny(path, fd)) return f;
  struct btrfs_ioctl_quota_rescan_args args {};
  // A rescan already running does the same work.
  if (ioctl(fd.get(), BTRFS_IOC_QUOTA_RESCAN, &args) != 0 && errno != EINPROGRESS)
    return Fail(errno, "btrfs_quota_rescan", path);
  if (wait && ioctl(fd.get(), BTRFS_IOC_QUOTA_RESCAN_WAIT, nullptr) != 0)
    return Fail(errno, "btrfs_quota_rescan_wait", path);
  return Ok();
}

Failure BtrfsGetQgroupUsage(const std::string& path, uint64_t qgroup_id,
                            BtrfsUsage& out) {
  if (qgroup_id == 0) {
    if (Failure f = BtrfsSubvolumeId(path, qgroup_id)) return f;
  }
  Fd fd;
  if (Failure f = OpenAny(path, fd)) return f;
  std::vector<uint8_t> info;
  if (Failure f = SearchQuotaItem(fd.get(), path, BTRFS_QGROUP_INFO_KEY, qgroup_id, info))
    return f;
  // A qgroup without a limit item has no limits.
  std::vector<uint8_t> limit;
  Failure no_limit = SearchQuotaItem(fd.get(), path, BTRFS_QGROUP_LIMIT_KEY, qgroup_id, limit);
  if (no_limit && no_limit.err != ENOENT) return no_limit;
  // btrfs_qgroup_info_item: generation, rfer, rfer_cmpr, excl, excl_cmpr.
  // btrfs_qgroup_limit_item: flags, max_rfer, max_excl, rsv_rfer, rsv_excl.
  out.qgroup_id = qgroup_id;
  out.referenced = ItemField(info, 1);
  out.exclusive = ItemField(info, 3);
  uint64_t flags = ItemField(limit, 0);
  out.max_referenced = (flags & BTRFS_QGROUP_LIMIT_MAX_RFER) ? ItemField(limit, 1) : 0;
  out.max_exclusive = (flags & BTRFS_QGROUP_LIMIT_MAX_EXCL) ? ItemField(limit, 2) : 0;
  return Ok();
}

}  // namespace strata
