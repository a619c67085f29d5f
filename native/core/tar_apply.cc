#include "tar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "tar_internal.h"

// The filesystem side of TarApplier: resolving parents inside the root,
// replacing and removing what is there, creating entries, whiteouts, metadata.
namespace strata {
using namespace tar_internal;
namespace {

// Data is written in pieces small enough that the checksum leaves them in
// cache for the copy.
constexpr uint64_t kWritePiece = 128 << 10;
// A large file's data is handed to writeback every this many bytes.
constexpr uint64_t kWritebackEvery = 8 << 20;

bool IsRegularType(char t) { return t == '0' || t == 0 || t == '7'; }

}  // namespace

// The path of an fd's directory relative to the root, with symlinks resolved,
// so that each file is known under one name whichever way the archive
// reached it.
Failure TarApplier::RelativePath(int fd, const std::string& entry, std::string& out) {
  char buf[PATH_MAX + 1];
  ssize_t n = readlink(ProcPath(fd).c_str(), buf, PATH_MAX);
  if (n < 0) return SysProblem(Fail(errno, "readlink", ProcPath(fd)), entry);
  std::string abs(buf, static_cast<size_t>(n));
  std::string prefix = root_path_ == "/" ? "/" : root_path_ + "/";
  if (abs == root_path_) {
    out.clear();
  } else if (abs.compare(0, prefix.size(), prefix) == 0) {
    out = abs.substr(prefix.size());
  } else {
    return Problem("ERR_ARCHIVE_UNSAFE_PATH", entry, "parent directory resolves outside the layer");
  }
  return Ok();
}

Failure TarApplier::OpenParent(const std::string& parent, const std::string& entry, int& fd,
                               std::string& real) {
  if (parent.empty()) {
    fd = root_.get();
    real.clear();
    return Ok();
  }
  if (cache_valid_ && cached_parent_ == parent) {
    fd = cached_parent_fd_.get();
    real = cached_parent_real_;
    return Ok();
  }
  Fd opened(OpenInRoot(root_.get(), parent, O_PATH | O_DIRECTORY));
  if (!opened.valid() && errno == ENOENT) {
    // Missing parents are created as Docker does: root-owned, 0755.
    Fd previous;
    std::string prefix;
    size_t pos = 0;
    while (pos <= parent.size()) {
      size_t slash = parent.find('/', pos);
      if (slash == std::string::npos) slash = parent.size();
      std::string part = parent.substr(pos, slash - pos);
      prefix = Join(prefix, part);
      pos = slash + 1;
      Fd next(OpenInRoot(root_.get(), prefix, O_PATH | O_DIRECTORY));
      if (!next.valid() && errno == ENOENT) {
        int at = previous.valid() ? previous.get() : root_.get();
        if (mkdirat(at, part.c_str(), 0755) != 0)
          return SysProblem(Fail(errno, "mkdirat", prefix), entry);
        next = Fd(OpenInRoot(root_.get(), prefix, O_PATH | O_DIRECTORY));
        std::string created;
        if (next.valid()) {
          if (Failure f = RelativePath(next.get(), entry, created)) return f;
          added_.insert(created);
        }
      }
      if (!next.valid()) return SysProblem(Fail(errno, "openat2", prefix), entry);
      previous = std::move(next);
    }
    opened = std::move(previous);
  }
  if (!opened.valid()) return SysProblem(Fail(errno, "openat2", parent), entry);
  if (Failure f = RelativePath(opened.get(), entry, real)) return f;
  cached_parent_fd_ = std::move(opened);
  cached_parent_ = parent;
  cached_parent_real_ = real;
  cache_valid_ = true;
  fd = cached_parent_fd_.get();
  return Ok();
}

// Before a path is replaced or removed, FILE records pointing into it keep
// their bytes, so the tar-split still rebuilds the original archive.
Failure TarApplier::KeepTrackedContent(const std::string& path) {
  auto begin = tracked_.lower_bound(path);
  auto end = tracked_.lower_bound(path + "0");  // '0' sorts right after '/'
  for (auto it = begin; it != end;) {
    if (it->first != path && it->first.compare(0, path.size() + 1, path + "/") != 0) {
      ++it;
      continue;
    }
    Fd fd(OpenInRoot(root_.get(), it->first, O_RDONLY | O_NOFOLLOW));
    if (!fd.valid()) return SysProblem(Fail(errno, "openat2", it->first), path);
    if (Failure f = split_.ConvertToRaw(it->second, fd.get())) return SysProblem(f, path);
    it = tracked_.erase(it);
  }
  return Ok();
}

Failure TarApplier::RemoveTree(int parent, const std::string& name, const std::string& path) {
  Fd dir(openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir.valid()) return SysProblem(Fail(errno, "openat", path), path);
  int listing = dup(dir.get());
  if (listing < 0) return SysProblem(Fail(errno, "dup", path), path);
  std::unique_ptr<DIR, int (*)(DIR*)> stream(fdopendir(listing), closedir);
  if (!stream) {
    close(listing);
    return SysProblem(Fail(errno, "fdopendir", path), path);
  }
  std::vector<std::pair<std::string, bool>> children;
  errno = 0;
  while (struct dirent* d = readdir(stream.get())) {
    if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) continue;
    bool is_dir = d->d_type == DT_DIR;
    if (d->d_type == DT_UNKNOWN) {
      struct stat st;
      is_dir = fstatat(dir.get(), d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    children.emplace_back(d->d_name, is_dir);
  }
  if (errno) return SysProblem(Fail(errno, "readdir", path), path);
  for (const auto& [child, is_dir] : children) {
    if (is_dir) {
      if (Failure f = RemoveTree(dir.get(), child, Join(path, child))) return f;
    } else if (unlinkat(dir.get(), child.c_str(), 0) != 0) {
      return SysProblem(Fail(errno, "unlinkat", Join(path, child)), path);
    }
  }
  if (unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0)
    return SysProblem(Fail(errno, "unlinkat", path), path);
  return Ok();
}

Failure TarApplier::RemoveExisting(int parent, const std::string& name, const std::string& path,
                                   bool keep_dir, bool& kept_dir) {
  kept_dir = false;
  struct stat st;
  if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Ok();
    return SysProblem(Fail(errno, "fstatat", path), entry_.name);
  }
  if (S_ISDIR(st.st_mode) && keep_dir) {
    kept_dir = true;
    return Ok();
  }
  if (Failure f = KeepTrackedContent(path)) return f;
  if (S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)) cache_valid_ = false;
  if (S_ISDIR(st.st_mode)) {
    for (auto it = dir_times_.lower_bound(path); it != dir_times_.lower_bound(path + "0");) {
      bool inside = it->first == path || it->first.compare(0, path.size() + 1, path + "/") == 0;
      it = inside ? dir_times_.erase(it) : std::next(it);
    }
    return RemoveTree(parent, name, path);
  }
  if (unlinkat(parent, name.c_str(), 0) != 0)
    return SysProblem(Fail(errno, "unlinkat", path), entry_.name);
  return Ok();
}

// Remove mode, opaque directory: drop everything this layer did not add.
Failure TarApplier::RemoveNotAdded(int dir, const std::string& path) {
  int listing = dup(dir);
  if (listing < 0) return SysProblem(Fail(errno, "dup", path), entry_.name);
  std::unique_ptr<DIR, int (*)(DIR*)> stream(fdopendir(listing), closedir);
  if (!stream) {
    close(listing);
    return SysProblem(Fail(errno, "fdopendir", path), entry_.name);
  }
  std::vector<std::string> children;
  while (struct dirent* d = readdir(stream.get()))
    if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..")) children.push_back(d->d_name);
  for (const std::string& child : children) {
    std::string child_path = Join(path, child);
    if (added_.count(child_path)) {
      Fd sub(openat(dir, child.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (sub.valid())
        if (Failure f = RemoveNotAdded(sub.get(), child_path)) return f;
      continue;
    }
    bool kept;
    if (Failure f = RemoveExisting(dir, child, child_path, false, kept)) return f;
  }
  return Ok();
}

Failure TarApplier::ApplyWhiteout(const std::string& archive_parent, const std::string& name) {
  const Entry& e = entry_;
  int pfd;
  std::string parent;
  if (Failure f = OpenParent(archive_parent, e.name, pfd, parent)) return f;
  if (name == ".wh..wh..opq") {
    if (mode_ == WhiteoutMode::Overlay) {
      if (setxattr(ProcPath(pfd).c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0)
        return SysProblem(Fail(errno, "setxattr", Join(parent, "trusted.overlay.opaque")), e.name);
      return Ok();
    }
    Fd dir(OpenInRoot(root_.get(), parent, O_RDONLY | O_DIRECTORY));
    if (!dir.valid()) return SysProblem(Fail(errno, "openat2", parent), e.name);
    cache_valid_ = false;
    return RemoveNotAdded(dir.get(), parent);
  }
  std::string target = name.substr(4);
  std::string path = Join(parent, target);
  if (target.empty() || target == "." || target == "..")
    return Problem("ERR_ARCHIVE_BAD_PATH", e.name, "whiteout names no file");
  bool kept;
  if (Failure f = RemoveExisting(pfd, target, path, false, kept)) return f;
  if (mode_ == WhiteoutMode::Remove) return Ok();
  if (mknodat(pfd, target.c_str(), S_IFCHR, makedev(0, 0)) != 0)
    return SysProblem(Fail(errno, "mknodat", path), e.name);
  if (fchownat(pfd, target.c_str(), static_cast<uid_t>(e.uid), static_cast<gid_t>(e.gid),
               AT_SYMLINK_NOFOLLOW) != 0)
    return SysProblem(Fail(errno, "fchownat", path), e.name);
  added_.insert(path);
  return Ok();
}

// chown first (it clears setuid/setgid and security.capability), then the
// mode, then xattrs, then times (directories' at Finish).
Failure TarApplier::SetMetadata(int parent, const std::string& name, int fd) {
  const Entry& e = entry_;
  uid_t uid = static_cast<uid_t>(e.uid);
  gid_t gid = static_cast<gid_t>(e.gid);
  bool symlink = e.type == '2';
  if (fd >= 0 ? fchown(fd, uid, gid) : fchownat(parent, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW))
    return SysProblem(Fail(errno, "chown", e.path), e.name);
  if (!symlink &&
      (fd >= 0 ? fchmod(fd, e.mode) : fchmodat(parent, name.c_str(), e.mode, AT_SYMLINK_NOFOLLOW)))
    return SysProblem(Fail(errno, "chmod", e.path), e.name);
  for (const auto& [key, value] : e.xattrs) {
    int r = fd >= 0 ? fsetxattr(fd, key.c_str(), value.data(), value.size(), 0)
                    : lsetxattr((ProcPath(parent) + "/" + name).c_str(), key.c_str(),
                                value.data(), value.size(), 0);
    // As Docker: EPERM (e.g. user.* on a symlink, or a restricted userns) is
    // not fatal; anything else (ENOTSUP included) is.
    if (r != 0 && errno != EPERM) return SysProblem(Fail(errno, "setxattr", e.path, key), e.name);
  }
  if (e.type == '5') {
    dir_times_[e.path] = Times{e.atime_sec, e.mtime_sec, e.atime_nsec, e.mtime_nsec};
    return Ok();
  }
  struct timespec ts[2] = {{static_cast<time_t>(e.atime_sec), e.atime_nsec},
                           {static_cast<time_t>(e.mtime_sec), e.mtime_nsec}};
  if (fd >= 0 ? futimens(fd, ts) : utimensat(parent, name.c_str(), ts, AT_SYMLINK_NOFOLLOW))
    return SysProblem(Fail(errno, "utimensat", e.path), e.name);
  return Ok();
}

Failure TarApplier::CreateEntry() {
  Entry& e = entry_;
  stats_.entries++;
  padding_remaining_ = PaddingFor(e.size);
  payload_remaining_ = e.size;
  auto skip_payload = [&]() { return SkipPayload(); };

  bool regular = IsRegularType(e.type);
  bool known = regular || e.type == '1' || e.type == '2' || e.type == '3' || e.type == '4' ||
               e.type == '5' || e.type == '6';
  if (!known) {
    std::string shown = e.type >= 32 && e.type < 127 ? std::string(1, e.type)
                                                      : "\\x" + std::to_string(static_cast<uint8_t>(e.type));
    return Problem("ERR_ARCHIVE_UNSUPPORTED", e.name, "unsupported entry type '" + shown + "'");
  }

  if (e.path.empty()) {  // the layer root itself, e.g. "./"
    if (e.type != '5')
      return Problem("ERR_ARCHIVE_BAD_PATH", e.name, "entry would replace the layer directory");
    if (mode_ == WhiteoutMode::Index) return skip_payload();
    if (Failure f = SetMetadata(-1, "", root_.get())) return f;
    dir_times_[""] = Times{e.atime_sec, e.mtime_sec, e.atime_nsec, e.mtime_nsec};
    return skip_payload();
  }

  // AUFS metadata at the top (.wh..wh.plnk, .wh..wh.aufs) is not content.
  if (e.path.compare(0, 8, ".wh..wh.") == 0 && e.path != ".wh..wh..opq") return skip_payload();

  size_t slash = e.path.rfind('/');
  std::string parent = slash == std::string::npos ? "" : e.path.substr(0, slash);
  std::string name = slash == std::string::npos ? e.path : e.path.substr(slash + 1);
  if (name.compare(0, 4, ".wh.") == 0) {
    if (mode_ != WhiteoutMode::Index)
      if (Failure f = ApplyWhiteout(parent, name)) return f;
    return skip_payload();
  }
  if (mode_ == WhiteoutMode::Index) return IndexEntry();

  int pfd;
  std::string real_parent;
  if (Failure f = OpenParent(parent, e.name, pfd, real_parent)) return f;
  e.path = Join(real_parent, name);
  if (e.type != '5') dir_times_.erase(e.path);
  bool kept_dir = false;

  if (regular) {
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    file_ = Fd(openat(pfd, name.c_str(), flags, 0600));
    if (!file_.valid() && errno == EEXIST) {
      if (Failure f = RemoveExisting(pfd, name, e.path, false, kept_dir)) return f;
      file_ = Fd(openat(pfd, name.c_str(), flags, 0600));
    }
    if (!file_.valid()) return SysProblem(Fail(errno, "openat", e.path), e.name);
    added_.insert(e.path);
    return BeginPayload();
  }

  cache_valid_ = cache_valid_ && e.type != '5' && e.type != '2';
  auto create = [&]() -> int {
    switch (e.type) {
      case '5':
        return mkdirat(pfd, name.c_str(), 0700);
      case '2':
        return symlinkat(e.link.c_str(), pfd, name.c_str());
      case '1': {
        Fd target(OpenInRoot(root_.get(), e.link, O_PATH | O_NOFOLLOW));
        if (!target.valid()) return -1;
        return linkat(target.get(), "", pfd, name.c_str(), AT_EMPTY_PATH);
      }
      case '3':
        return mknodat(pfd, name.c_str(), S_IFCHR | 0600, makedev(e.devmajor, e.devminor));
      case '4':
        return mknodat(pfd, name.c_str(), S_IFBLK | 0600, makedev(e.devmajor, e.devminor));
      default:
        return mknodat(pfd, name.c_str(), S_IFIFO | 0600, 0);
    }
  };
  const char* call = e.type == '5' ? "mkdirat" : e.type == '2' ? "symlinkat"
                     : e.type == '1' ? "linkat" : "mknodat";
  if (e.type == '1' && e.link == e.path)
    return Problem("ERR_ARCHIVE_BAD_PATH", e.name, "hard link to itself");
  int r = create();
  if (r != 0 && errno == EEXIST) {
    if (Failure f = RemoveExisting(pfd, name, e.path, e.type == '5', kept_dir)) return f;
    r = kept_dir ? 0 : create();
  }
  if (r != 0) {
    if (e.type == '1')
      return SysProblem(Fail(errno, call, e.link, e.path), e.name);
    return SysProblem(Fail(errno, call, e.path), e.name);
  }
  added_.insert(e.path);
  if (e.type == '5') {
    Fd dir(openat(pfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir.valid()) return SysProblem(Fail(errno, "openat", e.path), e.name);
    if (Failure f = SetMetadata(pfd, name, dir.get())) return f;
  } else if (e.type != '1') {  // a hard link shares its target's metadata
    if (Failure f = SetMetadata(pfd, name, -1)) return f;
  }
  return skip_payload();
}

// Index mode: a regular file's payload is checksummed for its tar-split
// record; nothing is created (the directory already holds the file).
Failure TarApplier::IndexEntry() {
  if (!IsRegularType(entry_.type)) return SkipPayload();
  return BeginPayload();
}

// A regular file's data follows: its segments (one, unless sparse), its
// checksum, and the state that reads them (or its sparse map first).
Failure TarApplier::BeginPayload() {
  Entry& e = entry_;
  if (!e.sparse) e.segments = {SparseSegment{0, e.size}};
  segment_ = 0;
  done_in_segment_ = 0;
  unflushed_ = 0;
  checksum_ = ContentChecksum();
  if (e.sparse_map_in_data) {
    if (e.size == 0) return Problem("ERR_ARCHIVE_CORRUPT", e.name, "sparse file without its map");
    sparse_map_text_.clear();
    state_ = State::SparseMap;
    return Ok();
  }
  if (Failure f = CheckSegments()) return f;
  state_ = State::Payload;
  if (payload_remaining_ == 0) return FinishFile();
  return Ok();
}

Failure TarApplier::SkipPayload() {
  state_ = payload_remaining_ > 0 ? State::Skip : padding_remaining_ > 0 ? State::Padding : State::Header;
  return Ok();
}

Failure TarApplier::WritePayload(const uint8_t* data, size_t size) {
  const std::vector<SparseSegment>& segments = entry_.segments;
  while (size > 0) {
    while (segment_ < segments.size() && done_in_segment_ == segments[segment_].length) {
      segment_++;
      done_in_segment_ = 0;
    }
    if (segment_ >= segments.size())
      return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "more data than the sparse map holds");
    const SparseSegment& seg = segments[segment_];
    size_t take = static_cast<size_t>(
        std::min<uint64_t>({static_cast<uint64_t>(size), seg.length - done_in_segment_, kWritePiece}));
    checksum_.Update(data, take);
    size_t written = mode_ == WhiteoutMode::Index ? take : 0;  // index mode writes nothing
    while (written < take) {
      ssize_t n = pwrite(file_.get(), data + written, take - written,
                         static_cast<off_t>(seg.offset + done_in_segment_ + written));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return SysProblem(Fail(errno, "write", entry_.path), entry_.name);
      written += static_cast<size_t>(n);
    }
    done_in_segment_ += take;
    data += take;
    size -= take;
    // Starts writing a large file back while the rest is applied: the syncfs
    // at the end then waits for less. Only a hint: the syncfs still makes
    // everything durable and reports any write error.
    if (mode_ != WhiteoutMode::Index && (unflushed_ += take) >= kWritebackEvery) {
      sync_file_range(file_.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
      unflushed_ = 0;
    }
  }
  return Ok();
}

Failure TarApplier::FinishFile() {
  Entry& e = entry_;
  if (mode_ != WhiteoutMode::Index) {
    if (e.sparse && ftruncate(file_.get(), static_cast<off_t>(e.real_size)) != 0)
      return SysProblem(Fail(errno, "ftruncate", e.path), e.name);
    if (Failure f = SetMetadata(-1, "", file_.get())) return f;
    file_ = Fd();
  }
  uint64_t checksum = checksum_.Final();
  if (e.sparse && e.size > 0)
    tracked_[e.path] = split_.AddSparse(e.path, e.segments, checksum);
  else if (e.size > 0)
    tracked_[e.path] = split_.AddFile(e.path, e.size, checksum);
  else
    tracked_.erase(e.path);
  stats_.content_size += e.real_size;
  state_ = padding_remaining_ > 0 ? State::Padding : State::Header;
  return Ok();
}

}  // namespace strata
