#include "tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "clone.h"
#include "dir_stream.h"
#include "fs.h"

namespace strata {
namespace {

constexpr unsigned kStatxMask = STATX_BASIC_STATS | STATX_MNT_ID;

// Entries of one directory are handed out in batches: fewer queue operations,
// and workers mostly create files in different directories, not contending
// for one directory's lock.
constexpr size_t kBatchSize = 256;

// How far down the queue a worker looks for a batch in allocation groups no
// other worker is in.
constexpr size_t kGroupScan = 64;

// Regular files of a batch are copied this many at a time, a step at a time
// (all opened, then all created, all cloned, ...): the kernel runs the same
// code for many files in a row, with it still in the CPU's caches. Two fds
// per file stay open meanwhile. (On xfs, 16 to 256 at a time took 5 to 7%
// less time than one file at a time; 16 keeps the fds few.)
constexpr size_t kStageFiles = 16;

// One entry to copy: full paths (for errors, and the few calls that have no
// form relative to a directory fd), and its name, the tail of both.
struct Entry {
  std::string src;
  std::string dst;
  size_t name_length;
  // For a regular file the listing named as one, only the type (stx_mask 0):
  // CopyFiles stats it by its fd.
  struct statx st;

  const char* src_name() const { return src.c_str() + src.size() - name_length; }
  const char* dst_name() const { return dst.c_str() + dst.size() - name_length; }
};

// Entries of one directory; the worker opens the directory (source and
// copy) once per batch and works relative to those fds: no path walks.
struct Batch {
  std::shared_ptr<const Entry> dir;
  // The allocation groups of the directory and of its copy, so of most of
  // the files and their data (see AllocationGroupShift); kNoGroup if none.
  uint64_t src_group;
  uint64_t dst_group;
  std::vector<Entry> entries;
};

// Files up to this long whose blocks cover their length (no holes to keep)
// are copied with one read and one write: no hole search, no truncate, and
// cheaper than copy_file_range, which ext4 does by splicing page by page.
constexpr uint64_t kSmallCopy = 64 * 1024;

// Copies the first `size` bytes of `in` (fewer if it shrank) to the empty `out`.
Failure CopySmall(int in, int out, uint64_t size, const Entry& e, uint64_t& bytes) {
  if (size == 0) return Ok();
  std::unique_ptr<char[]> buf(new char[size]);
  uint64_t length = 0;
  while (length < size) {
    ssize_t n = pread(in, buf.get() + length, size - length, static_cast<off_t>(length));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(errno, "read", e.src);
    if (n == 0) break;
    length += static_cast<uint64_t>(n);
  }
  for (uint64_t done = 0; done < length;) {
    ssize_t n = pwrite(out, buf.get() + done, length - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(errno, "write", e.dst);
    done += static_cast<uint64_t>(n);
  }
  bytes += length;
  return Ok();
}

struct Owner {
  uid_t uid;
  gid_t gid;
};

using InodeKey = std::pair<dev_t, uint64_t>;

InodeKey KeyOf(const struct statx& st) {
  return {makedev(st.stx_dev_major, st.stx_dev_minor), st.stx_ino};
}

// FICLONE errors that hold for every file between the same two mounts: the
// filesystem cannot share extents, or the mounts differ.
bool ReflinkImpossible(int err) {
  return err == EOPNOTSUPP || err == ENOTTY || err == ENOSYS || err == EXDEV;
}

// FICLONE errors that only concern this one file (e.g. btrfs refusing to
// share between nodatacow and datacow files).
bool ReflinkRefused(int err) { return err == EINVAL; }

struct timespec Timespec(const struct statx_timestamp& t) {
  return {static_cast<time_t>(t.tv_sec), static_cast<long>(t.tv_nsec)};
}

Failure ReadLink(int dirfd, const Entry& e, std::string& target) {
  std::vector<char> buf(std::max<uint64_t>(e.st.stx_size, 255) + 1);
  for (;;) {
    ssize_t n = readlinkat(dirfd, e.src_name(), buf.data(), buf.size());
    if (n < 0) return Fail(errno, "readlink", e.src);
    if (static_cast<size_t>(n) < buf.size()) {
      target.assign(buf.data(), static_cast<size_t>(n));
      return Ok();
    }
    buf.resize(buf.size() * 2);  // the link grew since statx
  }
}

Failure CopyXattrs(const std::string& src, const std::string& dst) {
  std::vector<std::string> names;
  if (Failure f = ListXattrs(src, names)) return f;
  std::vector<uint8_t> value;
  for (const std::string& name : names) {
    if (Failure f = GetXattr(src, name, value)) {
      if (f.err == ENODATA) continue;  // removed since the listing
      return f;
    }
    if (Failure f = SetXattr(dst, name, value.data(), value.size(), XattrMode::kAny))
      return f;
  }
  return Ok();
}

// Reads into `small` if it fits, else into `big` (sized by asking first, again
// while the answer keeps growing). `call(buf, size)` is the syscall.
template <typename Call>
ssize_t ReadSized(char* small, size_t small_size, std::vector<char>& big, const char*& out,
                  Call call) {
  ssize_t n = call(small, small_size);
  out = small;
  while (n < 0 && errno == ERANGE) {
    n = call(nullptr, 0);
    if (n < 0) break;
    big.resize(static_cast<size_t>(n) + 1);
    n = call(big.data(), big.size());
    out = big.data();
  }
  return n;
}

// The xattrs of the open file `in` onto `out`. The usual file has none: one
// flistxattr asking only for the list's length tells (given a buffer, the
// kernel allocates one of that size for every call).
Failure CopyXattrsFd(int in, int out, const Entry& e) {
  ssize_t needed = flistxattr(in, nullptr, 0);
  if (needed < 0) return Fail(errno, "flistxattr", e.src);
  if (needed == 0) return Ok();
  char list_buf[1024];
  std::vector<char> list_big;
  const char* list = nullptr;
  ssize_t length = ReadSized(list_buf, sizeof list_buf, list_big, list,
                             [in](char* buf, size_t size) { return flistxattr(in, buf, size); });
  if (length < 0) return Fail(errno, "flistxattr", e.src);
  char value_buf[4096];
  std::vector<char> value_big;
  // The list is a sequence of NUL-terminated names.
  for (const char* name = list; name < list + length; name += strlen(name) + 1) {
    const char* value = nullptr;
    ssize_t size = ReadSized(value_buf, sizeof value_buf, value_big, value,
                             [in, name](char* buf, size_t size) {
                               return fgetxattr(in, name, buf, size);
                             });
    if (size < 0 && errno == ENODATA) continue;  // removed since the listing
    if (size < 0) return Fail(errno, "fgetxattr", e.src);
    if (fsetxattr(out, name, value, static_cast<size_t>(size), 0) != 0)
      return Fail(errno, "fsetxattr", e.dst);
  }
  return Ok();
}

// Owner, then mode (chown clears setuid), then xattrs (chown clears
// security.capability), then timestamps (each of the above changes ctime only),
// for an entry that cannot be opened (symlink, device, fifo, socket) or a
// directory, by name in `dst_dirfd`, or by path with AT_FDCWD. New entries
// belong to `self` already; `mode_set`: the entry has its exact mode.
Failure CopyMetadata(const Entry& e, int dst_dirfd, bool mode_set, const Owner& self) {
  const struct statx& st = e.st;
  const char* dst = dst_dirfd == AT_FDCWD ? e.dst.c_str() : e.dst_name();
  bool chowned = st.stx_uid != self.uid || st.stx_gid != self.gid;
  if (chowned && fchownat(dst_dirfd, dst, st.stx_uid, st.stx_gid, AT_SYMLINK_NOFOLLOW) != 0)
    return Fail(errno, "lchown", e.dst);
  bool is_link = S_ISLNK(st.stx_mode);
  if (!is_link && (chowned || !mode_set) && fchmodat(dst_dirfd, dst, st.stx_mode & 07777, 0) != 0)
    return Fail(errno, "chmod", e.dst);
  if (Failure f = CopyXattrs(e.src, e.dst)) return f;
  struct timespec times[2] = {Timespec(st.stx_atime), Timespec(st.stx_mtime)};
  if (utimensat(dst_dirfd, dst, times, AT_SYMLINK_NOFOLLOW) != 0)
    return Fail(errno, "utimensat", e.dst);
  return Ok();
}

Failure MakeSpecial(int dst_dirfd, const Entry& e) {
  mode_t type = e.st.stx_mode & S_IFMT;
  dev_t dev = type == S_IFCHR || type == S_IFBLK
                  ? makedev(e.st.stx_rdev_major, e.st.stx_rdev_minor)
                  : 0;
  if (mknodat(dst_dirfd, e.dst_name(), type | (e.st.stx_mode & 07777), dev) != 0)
    return Fail(errno, "mknod", e.dst);
  return Ok();
}

// The bits of a mode that open(O_CREAT) keeps: those the umask does not clear.
// A default ACL on the destination replaces the umask: then nothing is trusted.
mode_t CreateMask(const std::string& dst) {
  if (lgetxattr(dst.c_str(), "system.posix_acl_default", nullptr, 0) >= 0) return 0;
  // The umask, without setting it (umask(2) only swaps, and other threads
  // of the process create files too).
  FILE* status = fopen("/proc/self/status", "re");
  if (status == nullptr) return 0;
  mode_t mask = 0;
  char line[256];
  while (fgets(line, sizeof line, status) != nullptr) {
    unsigned umask_value = 0;
    if (sscanf(line, "Umask: %o", &umask_value) == 1) {
      mask = 07777 & ~static_cast<mode_t>(umask_value);
      break;
    }
  }
  fclose(status);
  return mask;
}

// xfs's XFS_IOC_FSGEOMETRY_V1 (from xfs_fs.h, not in every system's headers).
struct XfsGeometryV1 {
  uint32_t blocksize;
  uint32_t rtextsize;
  uint32_t agblocks;
  uint32_t agcount;
  uint32_t logblocks;
  uint32_t sectsize;
  uint32_t inodesize;
  uint32_t imaxpct;
  uint64_t datablocks;
  uint64_t rtblocks;
  uint64_t rtextents;
  uint64_t logstart;
  unsigned char uuid[16];
  uint32_t sunit;
  uint32_t swidth;
  int32_t version;
  uint32_t flags;
  uint32_t logsectsize;
  uint32_t rtsectsize;
  uint32_t dirblocksize;
};
constexpr unsigned long kXfsIocFsGeometryV1 = _IOR('X', 100, struct XfsGeometryV1);
constexpr long kXfsMagic = 0x58465342;

constexpr uint64_t kNoGroup = ~uint64_t{0};

constexpr unsigned kCloseRangeUnshare = 1U << 1;  // CLOSE_RANGE_UNSHARE
#ifndef SYS_close_range
#define SYS_close_range 436  // Linux 5.9, the same number on every architecture
#endif

// How to tell a file's allocation group from its inode number: the shift that
// leaves the group (0: no groups worth telling apart). On xfs a reflink
// updates the reference counts of the shared extent under the lock of its
// allocation group's AGF, and a create allocates the inode under the lock of
// its group's AGI, so two workers cloning from one group, or creating in one,
// take turns. An xfs inode number is the group, then the inode within it, and
// files (with their data) are placed in their directory's group.
unsigned AllocationGroupShift(int dirfd) {
  struct statfs fs {};
  if (fstatfs(dirfd, &fs) != 0 || fs.f_type != kXfsMagic) return 0;
  XfsGeometryV1 geometry {};
  if (ioctl(dirfd, kXfsIocFsGeometryV1, &geometry) != 0 || geometry.agcount < 2 ||
      geometry.inodesize == 0 || geometry.blocksize < geometry.inodesize)
    return 0;
  auto log2_ceil = [](uint64_t n) {
    unsigned log = 0;
    while ((uint64_t{1} << log) < n) log++;
    return log;
  };
  // sb_agblklog + sb_inopblog, as xfs computes them.
  return log2_ceil(geometry.agblocks) + log2_ceil(geometry.blocksize / geometry.inodesize);
}

// An open directory pair for one batch.
struct DirFds {
  Fd src;
  Fd dst;
};

// A regular file being copied, its status, and its copy.
struct OpenFile {
  const Entry* entry;
  Fd in;
  struct statx st;
  Fd out;
};

class TreeCopier {
 public:
  TreeCopier(InodeKey dst_root, uint64_t dst_mount, Owner self, mode_t create_mask, bool reflink)
      : dst_root_(dst_root),
        dst_mount_(dst_mount),
        self_(self),
        create_mask_(create_mask),
        reflink_(reflink) {}

  Failure Run(Entry root, unsigned threads, TreeCopyStats& total) {
    Fd root_fd(open(root.src.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!root_fd.valid()) return Fail(errno, "open", root.src);
    if (threads > 1 && reflink_) {
      src_shift_ = AllocationGroupShift(root_fd.get());
      Fd dst_fd(open(root.dst.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (dst_fd.valid()) dst_shift_ = AllocationGroupShift(dst_fd.get());
    }
    if (Failure f = ListDirectory(std::move(root_fd), std::move(root), dst_root_.second)) return f;
    std::vector<TreeCopyStats> stats(threads);
    std::vector<std::thread> workers;
    int spawn_error = 0;
    for (unsigned i = 0; i < threads && spawn_error == 0; i++) {
      try {
        workers.emplace_back([this, &stats, i] { Work(stats[i]); });
      } catch (const std::system_error& e) {
        spawn_error = e.code().value();  // carry on with the workers we have
      }
    }
    for (std::thread& worker : workers) worker.join();
    if (workers.empty()) return Fail(spawn_error, "pthread_create", dirs_.front()->src);
    if (failure_) return failure_;

    // Every first name of a linked inode is complete now.
    for (const auto& [first, dst] : links_) {
      if (link(first.c_str(), dst.c_str()) != 0) return Fail(errno, "link", first, dst);
    }
    // Directories last: creating their entries changed their timestamps.
    for (const std::shared_ptr<const Entry>& dir : dirs_) {
      if (Failure f = CopyMetadata(*dir, AT_FDCWD, false, self_)) return f;
    }
    for (const TreeCopyStats& s : stats) {
      total.files += s.files;
      total.dirs += s.dirs;
      total.symlinks += s.symlinks;
      total.specials += s.specials;
      total.bytes += s.bytes;
      total.reflinked += s.reflinked;
      total.copy_ranged += s.copy_ranged;
      total.copied += s.copied;
    }
    total.hardlinks = links_.size();
    return Ok();
  }

 private:
  // Runs on a thread of our own: never on the caller's, which would be left
  // without the process's files.
  void Work(TreeCopyStats& stats) {
    // A new, empty file table for this thread, so that its opens and closes
    // take no lock the other workers (and Node's threads) take too: with the
    // shared table, 2 workers on xfs spent ~3% of their time in alloc_fd and
    // close. Where the kernel cannot, the shared one it is.
    syscall(SYS_close_range, 0U, ~0U, kCloseRangeUnshare);
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return failure_ || !queue_.empty() || busy_ == 0; });
      if (failure_ || queue_.empty()) break;  // failed, or nothing left anywhere
      auto next = NextBatch();
      Batch batch = std::move(*next);
      queue_.erase(next);
      busy_++;
      groups_busy_.push_back(batch.src_group);
      groups_busy_.push_back(batch.dst_group);
      lock.unlock();
      Failure failure = CopyBatch(batch, stats);
      lock.lock();
      busy_--;
      groups_busy_.erase(std::find(groups_busy_.begin(), groups_busy_.end(), batch.src_group));
      groups_busy_.erase(std::find(groups_busy_.begin(), groups_busy_.end(), batch.dst_group));
      if (failure && !failure_) failure_ = std::move(failure);
      if (failure_ || (queue_.empty() && busy_ == 0)) wake_.notify_all();
    }
    wake_.notify_all();
  }

  static uint64_t GroupOf(uint64_t ino, unsigned shift) {
    return shift == 0 ? kNoGroup : ino >> shift;
  }

  bool Busy(uint64_t group) const {
    return group != kNoGroup &&
           std::find(groups_busy_.begin(), groups_busy_.end(), group) != groups_busy_.end();
  }

  // The first queued batch whose groups no other worker is busy with (source
  // and copy apart: they meet in one AGF only when a create needs a new
  // inode chunk), among the next few; else the first. Call with mutex_ held.
  std::deque<Batch>::iterator NextBatch() {
    if (groups_busy_.empty()) return queue_.begin();
    auto end = queue_.begin() + static_cast<ptrdiff_t>(std::min(queue_.size(), kGroupScan));
    for (auto it = queue_.begin(); it != end; ++it) {
      if (!Busy(it->src_group) && !Busy(it->dst_group)) return it;
    }
    return queue_.begin();
  }

  Failure CopyBatch(const Batch& batch, TreeCopyStats& stats) {
    // O_PATH: only ever a base for *at() calls. The directories were made
    // or listed a moment ago; the fds last only as long as the batch.
    DirFds dir{Fd(open(batch.dir->src.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)),
               Fd(open(batch.dir->dst.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))};
    if (!dir.src.valid()) return Fail(errno, "open", batch.dir->src);
    if (!dir.dst.valid()) return Fail(errno, "open", batch.dir->dst);
    // Regular files after the rest: directories are listed sooner, for
    // other workers to share.
    std::vector<OpenFile> files;
    for (const Entry& entry : batch.entries) {
      if ((entry.st.stx_mode & S_IFMT) != S_IFREG) {
        if (Failure f = Copy(dir, entry, stats)) return f;
      } else {
        files.push_back(OpenFile{&entry, Fd(), {}, Fd()});
      }
    }
    for (size_t i = 0; i < files.size(); i += kStageFiles) {
      size_t end = std::min(files.size(), i + kStageFiles);
      if (Failure f = CopyFiles(dir, &files[i], &files[end], stats)) return f;
    }
    return Ok();
  }

  // Anything but a regular file.
  Failure Copy(const DirFds& dir, const Entry& e, TreeCopyStats& stats) {
    mode_t type = e.st.stx_mode & S_IFMT;
    if (type == S_IFDIR) {
      stats.dirs++;
      return CopyDirectory(dir, e);
    }
    if (e.st.stx_nlink > 1 && !FirstLink(e, e.st)) return Ok();
    if (type == S_IFLNK) {
      std::string target;
      if (Failure f = ReadLink(dir.src.get(), e, target)) return f;
      if (symlinkat(target.c_str(), dir.dst.get(), e.dst_name()) != 0)
        return Fail(errno, "symlink", e.dst);
      stats.symlinks++;
    } else {
      if (Failure f = MakeSpecial(dir.dst.get(), e)) return f;
      stats.specials++;
    }
    return CopyMetadata(e, dir.dst.get(), false, self_);
  }

  // Whether `e` is the first name seen of its inode; later names are linked
  // to the first copy once all workers are done.
  bool FirstLink(const Entry& e, const struct statx& st) {
    std::lock_guard<std::mutex> lock(links_mutex_);
    auto [it, inserted] = first_links_.emplace(KeyOf(st), e.dst);
    if (!inserted) links_.emplace_back(it->second, e.dst);
    return inserted;
  }

  // Makes the directory and queues its entries.
  Failure CopyDirectory(const DirFds& dir, const Entry& e) {
    if (mkdirat(dir.dst.get(), e.dst_name(), 0700) != 0) return Fail(errno, "mkdir", e.dst);
    struct statx copy {};
    if (dst_shift_ != 0 &&
        statx(dir.dst.get(), e.dst_name(), AT_SYMLINK_NOFOLLOW, STATX_INO, &copy) != 0)
      return Fail(errno, "statx", e.dst);
    Fd fd(openat(dir.src.get(), e.src_name(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return Fail(errno, "open", e.src);
    return ListDirectory(std::move(fd), e, copy.stx_ino);
  }

  // Lists the directory `e` (open as `fd`; its copy is inode `dst_ino`) and
  // queues its entries in batches.
  Failure ListDirectory(Fd fd, Entry e, uint64_t dst_ino) {
    DirStream stream;
    if (Failure f = OpenDirStream(std::move(fd), e.src, stream)) return f;
    DIR* dir = stream.get();
    auto parent = std::make_shared<const Entry>(std::move(e));
    std::vector<Entry> children;
    for (;;) {
      errno = 0;
      struct dirent* d = readdir(dir);
      if (d == nullptr) {
        if (errno != 0) return Fail(errno, "readdir", parent->src);
        break;
      }
      if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
      size_t length = strlen(d->d_name);
      Entry child{parent->src + "/" + d->d_name, parent->dst + "/" + d->d_name, length, {}};
      if (d->d_type == DT_REG) {
        // Statted by its fd once open (CopyFiles): one lookup of its name less.
        child.st.stx_mode = S_IFREG;
      } else {
        if (statx(dirfd(dir), d->d_name, AT_SYMLINK_NOFOLLOW, kStatxMask, &child.st) != 0)
          return Fail(errno, "statx", child.src);
        if (KeyOf(child.st) == dst_root_) continue;  // dst inside src: not itself
      }
      children.push_back(std::move(child));
    }
    uint64_t src_group = GroupOf(parent->st.stx_ino, src_shift_);
    uint64_t dst_group = GroupOf(dst_ino, dst_shift_);
    // Groups of the copy apart from those of the source.
    if (dst_group != kNoGroup) dst_group |= uint64_t{1} << 63;
    std::lock_guard<std::mutex> lock(mutex_);
    dirs_.push_back(parent);
    for (size_t i = 0; i < children.size(); i += kBatchSize) {
      size_t end = std::min(children.size(), i + kBatchSize);
      queue_.push_back(Batch{
          parent, src_group, dst_group,
          std::vector<Entry>(
              std::make_move_iterator(children.begin() + static_cast<ptrdiff_t>(i)),
              std::make_move_iterator(children.begin() + static_cast<ptrdiff_t>(end)))});
    }
    wake_.notify_all();
    return Ok();
  }

  // Regular files [begin, end), a step at a time (see kStageFiles): each
  // opened (never followed, and never blocking on a fifo put in its place)
  // and statted by its fd if the listing did not, its copy created and its
  // data copied, then its metadata set on the open copy.
  Failure CopyFiles(const DirFds& dir, OpenFile* begin, OpenFile* end, TreeCopyStats& stats) {
    OpenFile* kept = begin;  // files to copy, from begin to kept
    for (OpenFile* f = begin; f != end; f++) {
      const Entry& e = *f->entry;
      f->in = Fd(openat(dir.src.get(), e.src_name(),
                        O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC));
      if (!f->in.valid()) return Fail(errno, "open", e.src);
      f->st = e.st;
      if (f->st.stx_mask == 0 &&
          statx(f->in.get(), "", AT_EMPTY_PATH, kStatxMask, &f->st) != 0)
        return Fail(errno, "statx", e.src);
      // Replaced since it was listed.
      if (!S_ISREG(f->st.stx_mode)) return Fail(EINVAL, "copyfile", e.src, e.dst);
      if (f->st.stx_nlink > 1 && !FirstLink(e, f->st)) {
        f->in = Fd();  // linked to its first copy at the end
        continue;
      }
      if (kept != f) *kept = std::move(*f);
      kept++;
    }
    end = kept;
    for (OpenFile* f = begin; f != end; f++) {
      f->out = Fd(openat(dir.dst.get(), f->entry->dst_name(),
                         O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, f->st.stx_mode & 07777));
      if (!f->out.valid()) return Fail(errno, "open", f->entry->dst);
    }
    for (OpenFile* f = begin; f != end; f++) {
      if (Failure failure = CopyFileData(f->in.get(), f->out.get(), *f->entry, f->st, stats))
        return failure;
    }
    for (OpenFile* f = begin; f != end; f++) {
      const struct statx& sx = f->st;
      mode_t perm = sx.stx_mode & 07777;
      bool chowned = sx.stx_uid != self_.uid || sx.stx_gid != self_.gid;
      if (chowned && fchown(f->out.get(), sx.stx_uid, sx.stx_gid) != 0)
        return Fail(errno, "fchown", f->entry->dst);
      // open() applied the umask, and chown cleared setuid and setgid.
      bool exact = (perm & create_mask_) == perm && !(chowned && (perm & (S_ISUID | S_ISGID)));
      if (!exact && fchmod(f->out.get(), perm) != 0) return Fail(errno, "fchmod", f->entry->dst);
      if (Failure failure = CopyXattrsFd(f->in.get(), f->out.get(), *f->entry)) return failure;
    }
    for (OpenFile* f = begin; f != end; f++) {
      const struct statx& sx = f->st;
      struct timespec times[2] = {Timespec(sx.stx_atime), Timespec(sx.stx_mtime)};
      if (futimens(f->out.get(), times) != 0) return Fail(errno, "utimensat", f->entry->dst);
      stats.files++;
    }
    for (OpenFile* f = begin; f != end; f++) f->in = Fd();
    for (OpenFile* f = begin; f != end; f++) f->out = Fd();
    return Ok();
  }

  // Reflink first, per file. Errors that hold for a whole pair of mounts are
  // remembered so that later files skip the attempt; errors about one file
  // only make that file fall back.
  Failure CopyFileData(int in, int out, const Entry& e, const struct statx& sx,
                       TreeCopyStats& stats) {
    bool try_reflink = reflink_;
    std::pair<uint64_t, uint64_t> mounts{sx.stx_mnt_id, dst_mount_};
    if (try_reflink) {
      std::lock_guard<std::mutex> lock(links_mutex_);
      try_reflink = no_reflink_.count(mounts) == 0;
    }
    int reflink_error = 0;
    if (try_reflink) {
      // FICLONE refuses anything but a regular file (EINVAL), so a clone
      // needs no fstat to know that no fifo or device took the file's place.
      if (ioctl(out, FICLONE, in) == 0) {
        stats.reflinked++;
        stats.bytes += sx.stx_size;
        return Ok();
      }
      reflink_error = errno;
    }
    struct stat st {};
    if (fstat(in, &st) != 0) return Fail(errno, "fstat", e.src);
    if (!S_ISREG(st.st_mode)) return Fail(EINVAL, "copyfile", e.src, e.dst);  // replaced
    if (reflink_error != 0) {
      if (ReflinkImpossible(reflink_error)) {
        std::lock_guard<std::mutex> lock(links_mutex_);
        no_reflink_.insert(mounts);
      } else if (!ReflinkRefused(reflink_error)) {
        return Fail(reflink_error, "ficlone", e.src, e.dst);
      }
    }
    // Reading and copy_file_range must not see O_NONBLOCK.
    if (fcntl(in, F_SETFL, 0) != 0) return Fail(errno, "fcntl", e.src);
    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size <= kSmallCopy && static_cast<uint64_t>(st.st_blocks) * 512 >= size) {
      stats.copied++;
      return CopySmall(in, out, size, e, stats.bytes);
    }
    CloneMethod used = CloneMethod::kCopy;
    uint64_t bytes = 0;
    CloneMode mode = reflink_ ? CloneMode::kNoReflink : CloneMode::kCopy;
    if (Failure f = CloneData(in, out, size, mode, used, bytes, e.src, e.dst)) return f;
    stats.bytes += bytes;
    if (used == CloneMethod::kCopyFileRange) stats.copy_ranged++;
    else stats.copied++;
    return Ok();
  }

  const InodeKey dst_root_;
  const uint64_t dst_mount_;
  const Owner self_;  // who new files belong to
  const mode_t create_mask_;  // the mode bits open(O_CREAT) keeps
  const bool reflink_;  // false: read/write copies only
  unsigned src_shift_ = 0;  // see AllocationGroupShift
  unsigned dst_shift_ = 0;

  std::mutex mutex_;  // guards queue_, busy_, failure_, dirs_
  std::condition_variable wake_;
  std::deque<Batch> queue_;
  unsigned busy_ = 0;
  std::vector<uint64_t> groups_busy_;  // the groups of each batch being copied
  Failure failure_;
  std::vector<std::shared_ptr<const Entry>> dirs_;  // the root first

  std::mutex links_mutex_;  // guards first_links_, links_, no_reflink_
  std::map<InodeKey, std::string> first_links_;
  std::vector<std::pair<std::string, std::string>> links_;  // (first copy, new name)
  std::set<std::pair<uint64_t, uint64_t>> no_reflink_;      // (src mount, dst mount)
};

// How many workers a copy into `dst` gets when the caller leaves it to us:
// min(4, hardware threads), but one for reflinks into btrfs, where every
// create and clone in a subvolume modifies the one tree of that subvolume
// and a second worker mostly waits for its locks (measured with 2 workers:
// each spent more time blocked in btrfs_tree_lock/btrfs_tree_read_lock than
// it saved; the copy took longer, and more CPU, than with one).
unsigned AutoThreads(const std::string& dst, bool reflink) {
  struct statfs fs {};
  if (reflink && statfs(dst.c_str(), &fs) == 0 && fs.f_type == BTRFS_SUPER_MAGIC) return 1;
  return std::min(4u, std::max(1u, std::thread::hardware_concurrency()));
}

// Makes `dst` if missing; an existing one must be an empty directory.
Failure PrepareDestination(const std::string& dst) {
  if (mkdir(dst.c_str(), 0700) == 0) return Ok();
  if (errno != EEXIST) return Fail(errno, "mkdir", dst);
  Fd fd(open(dst.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return Fail(errno == ENOTDIR || errno == ELOOP ? EEXIST : errno, "open", dst);
  DirStream stream;
  if (Failure f = OpenDirStream(std::move(fd), dst, stream)) return f;
  DIR* dir = stream.get();
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent* d = readdir(dir);
    if (d == nullptr) {
      err = errno;
      break;
    }
    if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0) {
      err = ENOTEMPTY;
      break;
    }
  }
  if (err != 0) return Fail(err, err == ENOTEMPTY ? "copytree" : "readdir", dst);
  return Ok();
}

}  // namespace

Failure CopyTree(const std::string& src, const std::string& dst, unsigned threads, bool reflink,
                 TreeCopyStats& stats) {
  Entry root{src, dst, 0, {}};
  if (statx(AT_FDCWD, src.c_str(), 0, kStatxMask, &root.st) != 0)
    return Fail(errno, "statx", src);
  if (!S_ISDIR(root.st.stx_mode)) return Fail(ENOTDIR, "copytree", src, dst);
  if (Failure f = PrepareDestination(dst)) return f;
  // New entries must start out ours, with no setgid directory handing its
  // group down: CopyMetadata relies on it. The root gets its mode at the end.
  Owner self{geteuid(), getegid()};
  if (chown(dst.c_str(), self.uid, self.gid) != 0) return Fail(errno, "chown", dst);
  if (chmod(dst.c_str(), 0700) != 0) return Fail(errno, "chmod", dst);
  struct statx dst_st {};
  if (statx(AT_FDCWD, dst.c_str(), 0, kStatxMask, &dst_st) != 0)
    return Fail(errno, "statx", dst);
  if (KeyOf(dst_st) == KeyOf(root.st)) return Fail(EINVAL, "copytree", src, dst);

  if (threads == 0) threads = AutoThreads(dst, reflink);
  TreeCopier copier(KeyOf(dst_st), dst_st.stx_mnt_id, self, CreateMask(dst), reflink);
  return copier.Run(std::move(root), threads, stats);
}

}  // namespace strata
