#include "clone.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "fs.h"

namespace strata {

const char* CloneMethodName(CloneMethod method) {
  switch (method) {
    case CloneMethod::kFiclone: return "ficlone";
    case CloneMethod::kCopyFileRange: return "copy_file_range";
    case CloneMethod::kCopy: return "copy";
  }
  return "copy";
}

namespace {

// The largest request per copy_file_range call (the kernel caps it near 2 GiB).
constexpr uint64_t kKernelChunk = uint64_t{1} << 30;
constexpr size_t kBufferSize = size_t{1} << 20;

// Errors with which FICLONE and copy_file_range say "not on these files"
// (another filesystem, no support, unaligned) rather than "failed".
bool Unsupported(int err) {
  return err == EOPNOTSUPP || err == EXDEV || err == EINVAL || err == ENOSYS ||
         err == ENOTTY;
}

struct Files {
  int in;
  int out;
  const std::string& src;
  const std::string& dst;
};

// The next run of data at or after `from`, as [start, end); start == end when
// only holes remain.
Failure NextData(const Files& f, uint64_t from, uint64_t size, uint64_t& start,
                 uint64_t& end) {
  off_t data = lseek(f.in, static_cast<off_t>(from), SEEK_DATA);
  if (data < 0) {
    if (errno == ENXIO) {
      start = end = size;
      return Ok();
    }
    // Filesystems that cannot tell holes: everything left is data.
    if (errno == EINVAL) {
      start = from;
      end = size;
      return Ok();
    }
    return Fail(errno, "lseek", f.src);
  }
  off_t hole = lseek(f.in, data, SEEK_HOLE);
  if (hole < 0) return Fail(errno, "lseek", f.src);
  start = std::min(static_cast<uint64_t>(data), size);
  end = std::min(static_cast<uint64_t>(hole), size);
  return Ok();
}

// Copies [offset, end) with pread/pwrite; `copied` stops short if the source
// shrank meanwhile.
Failure ReadWrite(const Files& f, uint64_t offset, uint64_t end, uint64_t& copied) {
  // No bigger than the run, and not zeroed: filling a 1 MiB vector per file
  // would cost more than copying a small file does.
  size_t size = static_cast<size_t>(std::min<uint64_t>(kBufferSize, end - offset));
  std::unique_ptr<char[]> buffer(new char[size]);
  char* buf = buffer.get();
  copied = 0;
  while (offset + copied < end) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(size, end - offset - copied));
    ssize_t n = pread(f.in, buf, want, static_cast<off_t>(offset + copied));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(errno, "read", f.src);
    if (n == 0) return Ok();
    for (ssize_t done = 0; done < n;) {
      ssize_t w = pwrite(f.out, buf + done, static_cast<size_t>(n - done),
                         static_cast<off_t>(offset + copied + done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return Fail(errno, "write", f.dst);
      done += w;
    }
    copied += static_cast<uint64_t>(n);
  }
  return Ok();
}

// Copies [offset, end) with copy_file_range, switching `method` to kCopy (and
// finishing with read/write) when the kernel cannot copy between these files.
Failure KernelCopy(const Files& f, uint64_t offset, uint64_t end, CloneMethod& method,
                   uint64_t& copied) {
  copied = 0;
  while (offset + copied < end) {
    loff_t in_off = static_cast<loff_t>(offset + copied);
    loff_t out_off = in_off;
    size_t want = static_cast<size_t>(std::min(end - offset - copied, kKernelChunk));
    ssize_t n = copy_file_range(f.in, &in_off, f.out, &out_off, want, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && Unsupported(errno)) {
      method = CloneMethod::kCopy;
      uint64_t rest = 0;
      Failure failure = ReadWrite(f, offset + copied, end, rest);
      copied += rest;
      return failure;
    }
    if (n < 0) return Fail(errno, "copy_file_range", f.src, f.dst);
    if (n == 0) return Ok();
    copied += static_cast<uint64_t>(n);
  }
  return Ok();
}

// Copies the data runs of the source, leaving its holes as holes, and sets
// the destination's length (a trailing hole included).
Failure CopyData(const Files& f, uint64_t size, CloneMethod& method, uint64_t& length) {
  uint64_t pos = 0;
  while (pos < size) {
    uint64_t start = 0;
    uint64_t end = 0;
    if (Failure failure = NextData(f, pos, size, start, end)) return failure;
    if (start >= end) break;
    uint64_t copied = 0;
    Failure failure = method == CloneMethod::kCopyFileRange
                          ? KernelCopy(f, start, end, method, copied)
                          : ReadWrite(f, start, end, copied);
    if (failure) return failure;
    if (copied < end - start) {  // the source shrank while we copied it
      size = start + copied;
      break;
    }
    pos = end;
  }
  if (ftruncate(f.out, static_cast<off_t>(size)) != 0) return Fail(errno, "ftruncate", f.dst);
  length = size;
  return Ok();
}

Failure Transfer(const Files& f, uint64_t size, CloneMode mode, CloneMethod& used,
                 uint64_t& length) {
  if (mode == CloneMode::kAuto || mode == CloneMode::kReflink) {
    if (ioctl(f.out, FICLONE, f.in) == 0) {
      used = CloneMethod::kFiclone;
      length = size;
      return Ok();
    }
    if (mode == CloneMode::kReflink || !Unsupported(errno))
      return Fail(errno, "ficlone", f.src, f.dst);
  }
  used = mode == CloneMode::kCopy ? CloneMethod::kCopy : CloneMethod::kCopyFileRange;
  return CopyData(f, size, used, length);
}

}  // namespace

Failure CloneData(int in, int out, uint64_t size, CloneMode mode, CloneMethod& used,
                  uint64_t& bytes, const std::string& src, const std::string& dst) {
  return Transfer(Files{in, out, src, dst}, size, mode, used, bytes);
}

Failure CloneFile(const std::string& src, const std::string& dst, CloneMode mode,
                  CloneMethod& used, uint64_t& bytes) {
  Fd in;
  struct stat st {};
  if (Failure f = OpenNonBlocking(src, O_RDONLY, in, st)) return f;
  if (!S_ISREG(st.st_mode))
    return Fail(S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "copyfile", src, dst);
  mode_t perm = st.st_mode & 07777;
  Fd out(open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, perm));
  if (!out.valid()) return Fail(errno, "open", dst);

  Files files{in.get(), out.get(), src, dst};
  Failure failure = Transfer(files, static_cast<uint64_t>(st.st_size), mode, used, bytes);
  // open() applied the umask; the copy gets exactly the source's bits.
  if (!failure && fchmod(out.get(), perm) != 0) failure = Fail(errno, "fchmod", dst);
  if (failure) {
    out = Fd();
    unlink(dst.c_str());
  }
  return failure;
}

Failure CloneRange(int src_fd, const std::string& src_name, uint64_t src_offset,
                   const std::string& dst, uint64_t dst_offset, uint64_t length) {
  Fd out(open(dst.c_str(), O_WRONLY | O_CLOEXEC));
  if (!out.valid()) return Fail(errno, "open", dst);
  struct file_clone_range range {};
  range.src_fd = src_fd;
  range.src_offset = src_offset;
  range.src_length = length;
  range.dest_offset = dst_offset;
  if (ioctl(out.get(), FICLONERANGE, &range) != 0)
    return Fail(errno, "ficlonerange", src_name, dst);
  return Ok();
}

Failure CloneRange(const std::string& src, uint64_t src_offset,
                   const std::string& dst, uint64_t dst_offset, uint64_t length) {
  Fd in;
  struct stat st {};
  if (Failure f = OpenNonBlocking(src, O_RDONLY, in, st)) return f;
  return CloneRange(in.get(), src, src_offset, dst, dst_offset, length);
}

namespace {

// A new file in `dir`, unlinked at once so that nothing stays behind.
Failure AnonymousFile(const std::string& dir, Fd& out) {
  std::string pattern = dir + "/.strata-reflink-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  out = Fd(mkostemp(name.data(), O_CLOEXEC));
  if (!out.valid()) return Fail(errno, "mkostemp", dir);
  if (unlink(name.data()) != 0) return Fail(errno, "unlink", name.data());
  return Ok();
}

}  // namespace

Failure ProbeReflink(const std::string& dir, bool& supported) {
  Fd src;
  Fd dst;
  if (Failure f = AnonymousFile(dir, src)) return f;
  if (Failure f = AnonymousFile(dir, dst)) return f;
  // One block of data, so there is an extent to share.
  std::vector<char> block(4096, 'x');
  if (pwrite(src.get(), block.data(), block.size(), 0) < 0) return Fail(errno, "write", dir);
  if (ioctl(dst.get(), FICLONE, src.get()) == 0) {
    supported = true;
    return Ok();
  }
  if (!Unsupported(errno)) return Fail(errno, "ficlone", dir);
  supported = false;
  return Ok();
}

}  // namespace strata
