#include "tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
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

struct Entry {
  std::string src;
  std::string dst;
  struct statx st;
};

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

Failure ReadLink(const Entry& e, std::string& target) {
  std::vector<char> buf(std::max<uint64_t>(e.st.stx_size, 255) + 1);
  for (;;) {
    ssize_t n = readlink(e.src.c_str(), buf.data(), buf.size());
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

// Owner, then mode (chown clears setuid), then xattrs (chown clears
// security.capability), then timestamps (each of the above changes ctime only).
// New files belong to `self` already, and CloneFile gave them their exact
// mode: those calls are skipped when they would change nothing.
Failure CopyMetadata(const Entry& e, bool mode_set, const Owner& self) {
  const struct statx& st = e.st;
  const char* dst = e.dst.c_str();
  bool chowned = st.stx_uid != self.uid || st.stx_gid != self.gid;
  if (chowned && lchown(dst, st.stx_uid, st.stx_gid) != 0) return Fail(errno, "lchown", e.dst);
  bool is_link = S_ISLNK(st.stx_mode);
  if (!is_link && (chowned || !mode_set) && chmod(dst, st.stx_mode & 07777) != 0)
    return Fail(errno, "chmod", e.dst);
  if (Failure f = CopyXattrs(e.src, e.dst)) return f;
  struct timespec times[2] = {
      {static_cast<time_t>(st.stx_atime.tv_sec), static_cast<long>(st.stx_atime.tv_nsec)},
      {static_cast<time_t>(st.stx_mtime.tv_sec), static_cast<long>(st.stx_mtime.tv_nsec)},
  };
  if (utimensat(AT_FDCWD, dst, times, AT_SYMLINK_NOFOLLOW) != 0)
    return Fail(errno, "utimensat", e.dst);
  return Ok();
}

Failure MakeSpecial(const Entry& e) {
  mode_t type = e.st.stx_mode & S_IFMT;
  NodeType node = type == S_IFCHR   ? NodeType::kChar
                  : type == S_IFBLK ? NodeType::kBlock
                  : type == S_IFIFO ? NodeType::kFifo
                                    : NodeType::kSocket;
  return MakeNode(e.dst, node, e.st.stx_mode & 07777, e.st.stx_rdev_major,
                  e.st.stx_rdev_minor);
}

class TreeCopier {
 public:
  TreeCopier(InodeKey dst_root, uint64_t dst_mount, Owner self, bool reflink)
      : dst_root_(dst_root), dst_mount_(dst_mount), self_(self), reflink_(reflink) {}

  Failure Run(Entry root, unsigned threads, TreeCopyStats& total) {
    if (Failure f = CopyDirectory(root, false)) return f;
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
    if (workers.empty()) return Fail(spawn_error, "pthread_create", root.src);
    if (failure_) return failure_;

    // Every first name of a linked inode is complete now.
    for (const auto& [first, dst] : links_) {
      if (link(first.c_str(), dst.c_str()) != 0) return Fail(errno, "link", first, dst);
    }
    // Directories last: creating their entries changed their timestamps.
    for (const Entry& dir : dirs_) {
      if (Failure f = CopyMetadata(dir, false, self_)) return f;
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
  void Work(TreeCopyStats& stats) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return failure_ || !queue_.empty() || busy_ == 0; });
      if (failure_ || queue_.empty()) break;  // failed, or nothing left anywhere
      std::vector<Entry> batch = std::move(queue_.front());
      queue_.pop_front();
      busy_++;
      lock.unlock();
      Failure failure;
      for (const Entry& entry : batch) {
        failure = Copy(entry, stats);
        if (failure) break;
      }
      lock.lock();
      busy_--;
      if (failure && !failure_) failure_ = std::move(failure);
      if (failure_ || (queue_.empty() && busy_ == 0)) wake_.notify_all();
    }
    wake_.notify_all();
  }

  Failure Copy(const Entry& e, TreeCopyStats& stats) {
    mode_t type = e.st.stx_mode & S_IFMT;
    if (type == S_IFDIR) {
      stats.dirs++;
      return CopyDirectory(e, true);
    }
    if (e.st.stx_nlink > 1 && !FirstLink(e)) return Ok();
    bool mode_set = type == S_IFREG;
    if (type == S_IFREG) {
      if (Failure f = CopyFileData(e, stats)) return f;
      stats.files++;
    } else if (type == S_IFLNK) {
      std::string target;
      if (Failure f = ReadLink(e, target)) return f;
      if (symlink(target.c_str(), e.dst.c_str()) != 0) return Fail(errno, "symlink", e.dst);
      stats.symlinks++;
    } else {
      if (Failure f = MakeSpecial(e)) return f;
      stats.specials++;
    }
    return CopyMetadata(e, mode_set, self_);
  }

  // Whether `e` is the first name seen of its inode; later names are linked
  // to the first copy once all workers are done.
  bool FirstLink(const Entry& e) {
    std::lock_guard<std::mutex> lock(links_mutex_);
    auto [it, inserted] = first_links_.emplace(KeyOf(e.st), e.dst);
    if (!inserted) links_.emplace_back(it->second, e.dst);
    return inserted;
  }

  // Makes the directory (unless it is the existing root) and queues its entries.
  Failure CopyDirectory(const Entry& e, bool make) {
    if (make && mkdir(e.dst.c_str(), 0700) != 0) return Fail(errno, "mkdir", e.dst);
    Fd dir_fd(open(e.src.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir_fd.valid()) return Fail(errno, "open", e.src);
    std::vector<Entry> children;
    if (Failure f = ListDirectory(std::move(dir_fd), e, children)) return f;
    std::lock_guard<std::mutex> lock(mutex_);
    dirs_.push_back(e);
    for (size_t i = 0; i < children.size(); i += kBatchSize) {
      size_t end = std::min(children.size(), i + kBatchSize);
      queue_.emplace_back(std::make_move_iterator(children.begin() + static_cast<ptrdiff_t>(i)),
                          std::make_move_iterator(children.begin() + static_cast<ptrdiff_t>(end)));
    }
    wake_.notify_all();
    return Ok();
  }

  Failure ListDirectory(Fd fd, const Entry& e, std::vector<Entry>& children) {
    DirStream stream;
    if (Failure f = OpenDirStream(std::move(fd), e.src, stream)) return f;
    DIR* dir = stream.get();
    Failure failure;
    for (;;) {
      errno = 0;
      struct dirent* d = readdir(dir);
      if (d == nullptr) {
        if (errno != 0) failure = Fail(errno, "readdir", e.src);
        break;
      }
      if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
      Entry child{e.src + "/" + d->d_name, e.dst + "/" + d->d_name, {}};
      if (statx(dirfd(dir), d->d_name, AT_SYMLINK_NOFOLLOW, kStatxMask, &child.st) != 0) {
        failure = Fail(errno, "statx", child.src);
        break;
      }
      if (KeyOf(child.st) == dst_root_) continue;  // dst inside src: not itself
      children.push_back(std::move(child));
    }
    return failure;
  }

  // Reflink first, per file. Errors that hold for a whole pair of mounts are
  // remembered so that later files skip the attempt; errors about one file
  // only make that file fall back.
  Failure CopyFileData(const Entry& e, TreeCopyStats& stats) {
    CloneMethod used = CloneMethod::kCopy;
    uint64_t bytes = 0;
    if (!reflink_) {
      if (Failure f = CloneFile(e.src, e.dst, CloneMode::kCopy, used, bytes)) return f;
      stats.bytes += bytes;
      stats.copied++;
      return Ok();
    }
    std::pair<uint64_t, uint64_t> mounts{e.st.stx_mnt_id, dst_mount_};
    bool try_reflink;
    {
      std::lock_guard<std::mutex> lock(links_mutex_);
      try_reflink = no_reflink_.count(mounts) == 0;
    }
    if (try_reflink) {
      Failure f = CloneFile(e.src, e.dst, CloneMode::kReflink, used, bytes);
      if (!f) {
        stats.reflinked++;
        stats.bytes += bytes;
        return Ok();
      }
      bool ficlone = strcmp(f.syscall, "ficlone") == 0;
      if (ficlone && ReflinkImpossible(f.err)) {
        std::lock_guard<std::mutex> lock(links_mutex_);
        no_reflink_.insert(mounts);
      } else if (!ficlone || !ReflinkRefused(f.err)) {
        return f;
      }
    }
    if (Failure f = CloneFile(e.src, e.dst, CloneMode::kAuto, used, bytes)) return f;
    stats.bytes += bytes;
    if (used == CloneMethod::kFiclone) stats.reflinked++;
    else if (used == CloneMethod::kCopyFileRange) stats.copy_ranged++;
    else stats.copied++;
    return Ok();
  }

  const InodeKey dst_root_;
  const uint64_t dst_mount_;
  const Owner self_;  // who new files belong to
  const bool reflink_;  // false: read/write copies only

  std::mutex mutex_;  // guards queue_, busy_, failure_, dirs_
  std::condition_variable wake_;
  std::deque<std::vector<Entry>> queue_;
  unsigned busy_ = 0;
  Failure failure_;
  std::vector<Entry> dirs_;

  std::mutex links_mutex_;  // guards first_links_, links_, no_reflink_
  std::map<InodeKey, std::string> first_links_;
  std::vector<std::pair<std::string, std::string>> links_;  // (first copy, new name)
  std::set<std::pair<uint64_t, uint64_t>> no_reflink_;      // (src mount, dst mount)
};

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
  Entry root{src, dst, {}};
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

  if (threads == 0) threads = std::min(4u, std::max(1u, std::thread::hardware_concurrency()));
  TreeCopier copier(KeyOf(dst_st), dst_st.stx_mnt_id, self, reflink);
  return copier.Run(std::move(root), threads, stats);
}

}  // namespace strata
