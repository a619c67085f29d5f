#include "loop.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "fs.h"

namespace strata {
namespace {

constexpr const char* kControl = "/dev/loop-control";
// Other processes may take the free device first; this many tries is plenty.
constexpr int kAttachAttempts = 64;

std::string DevicePath(uint32_t number) { return "/dev/loop" + std::to_string(number); }

std::string SysfsDir(uint32_t number) {
  return "/sys/block/loop" + std::to_string(number);
}

// A sysfs attribute's text without its trailing newline.
Failure ReadAttribute(const std::string& path, std::string& out) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Fail(errno, "open", path);
  out.clear();
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(errno, "read", path);
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return Ok();
}

// Guests without udev may lack the node of a device the kernel just made:
// create it from the device number sysfs reports ("7:3").
Failure EnsureDeviceNode(uint32_t number) {
  std::string path = DevicePath(number);
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    if (!S_ISBLK(st.st_mode)) return Fail(ENOTBLK, "stat", path);
    return Ok();
  }
  if (errno != ENOENT) return Fail(errno, "stat", path);
  std::string dev;
  if (Failure f = ReadAttribute(SysfsDir(number) + "/dev", dev)) return f;
  unsigned major = 0;
  unsigned minor = 0;
  if (sscanf(dev.c_str(), "%u:%u", &major, &minor) != 2) return Fail(EINVAL, "sscanf", dev);
  if (mknod(path.c_str(), S_IFBLK | 0660, makedev(major, minor)) != 0 && errno != EEXIST)
    return Fail(errno, "mknod", path);
  return Ok();
}

uint32_t LoopFlags(const LoopOptions& options) {
  uint32_t flags = 0;
  if (options.read_only) flags |= LO_FLAGS_READ_ONLY;
  if (options.autoclear) flags |= LO_FLAGS_AUTOCLEAR;
  if (options.direct_io) flags |= LO_FLAGS_DIRECT_IO;
  return flags;
}

}  // namespace

Failure LoopAttach(const std::string& file, const LoopOptions& options,
                   std::string& device, uint32_t& number, Fd& device_fd) {
  Fd backing;
  struct stat st {};
  if (Failure f = OpenNonBlocking(file, options.read_only ? O_RDONLY : O_RDWR, backing, st))
    return f;
  // The kernel would refuse anything else too, but only after taking a device.
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) return Fail(EINVAL, "loop_configure", file);
  Fd control(open(kControl, O_RDWR | O_CLOEXEC));
  if (!control.valid()) return Fail(errno, "open", kControl);

  struct loop_config config {};
  config.fd = static_cast<uint32_t>(backing.get());
  config.block_size = options.block_size;
  config.info.lo_offset = options.offset;
  config.info.lo_sizelimit = options.size_limit;
  config.info.lo_flags = LoopFlags(options);
  // Only informational (LOOP_GET_STATUS64 reports it), and truncated.
  strncpy(reinterpret_cast<char*>(config.info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);

  for (int attempt = 0; attempt < kAttachAttempts; attempt++) {
    int free_number = ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (free_number < 0) return Fail(errno, "loop_ctl_get_free", kControl);
    uint32_t n = static_cast<uint32_t>(free_number);
    if (Failure f = EnsureDeviceNode(n)) return f;
    std::string path = DevicePath(n);
    Fd dev(open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!dev.valid()) return Fail(errno, "open", path);
    if (ioctl(dev.get(), LOOP_CONFIGURE, &config) == 0) {
      device = path;
      number = n;
      device_fd = std::move(dev);
      return Ok();
    }
    // EBUSY: another process configured this device after we picked it.
    if (errno != EBUSY) return Fail(errno, "loop_configure", file, path);
  }
  return Fail(EBUSY, "loop_configure", file);
}

Failure LoopDetach(const std::string& device) {
  Fd dev(open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!dev.valid()) return Fail(errno, "open", device);
  if (ioctl(dev.get(), LOOP_CLR_FD, 0) != 0) return Fail(errno, "loop_clr_fd", device);
  return Ok();
}

Failure LoopGetStatus(const std::string& device, LoopStatus& out) {
  Fd dev(open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!dev.valid()) return Fail(errno, "open", device);
  struct loop_info64 info {};
  if (ioctl(dev.get(), LOOP_GET_STATUS64, &info) != 0)
    return Fail(errno, "loop_get_status64", device);
  out.device = device;
  out.number = info.lo_number;
  out.offset = info.lo_offset;
  out.size_limit = info.lo_sizelimit;
  out.read_only = info.lo_flags & LO_FLAGS_READ_ONLY;
  out.autoclear = info.lo_flags & LO_FLAGS_AUTOCLEAR;
  out.partscan = info.lo_flags & LO_FLAGS_PARTSCAN;
  out.direct_io = info.lo_flags & LO_FLAGS_DIRECT_IO;
  // lo_file_name holds at most 63 bytes; sysfs has the whole path when mounted.
  if (ReadAttribute(SysfsDir(info.lo_number) + "/loop/backing_file", out.backing_file))
    out.backing_file.assign(reinterpret_cast<const char*>(info.lo_file_name),
                            strnlen(reinterpret_cast<const char*>(info.lo_file_name),
                                    LO_NAME_SIZE));
  return Ok();
}

namespace {

bool ParseNumber(const std::string& text, uint64_t& out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = strtoull(text.c_str(), &end, 10);
  return errno == 0 && *end == '\0';
}

// Reads one attached device from sysfs; `attached` is false when the device
// has no backing file (or was detached while we read).
Failure ReadSysfsStatus(uint32_t number, LoopStatus& out, bool& attached) {
  std::string dir = SysfsDir(number);
  std::string backing, offset, size_limit, read_only, autoclear, partscan, dio;
  const std::pair<const char*, std::string*> attributes[] = {
      {"/loop/backing_file", &backing}, {"/loop/offset", &offset},
      {"/loop/sizelimit", &size_limit}, {"/ro", &read_only},
      {"/loop/autoclear", &autoclear},  {"/loop/partscan", &partscan},
      {"/loop/dio", &dio},
  };
  attached = false;
  for (const auto& [name, value] : attributes) {
    Failure f = ReadAttribute(dir + name, *value);
    if (f.err == ENOENT || f.err == ENXIO) return Ok();
    if (f) return f;
  }
  attached = true;
  out.device = DevicePath(number);
  out.number = number;
  out.backing_file = backing;
  if (!ParseNumber(offset, out.offset)) return Fail(EINVAL, "read", dir + "/loop/offset");
  if (!ParseNumber(size_limit, out.size_limit))
    return Fail(EINVAL, "read", dir + "/loop/sizelimit");
  out.read_only = read_only == "1";
  out.autoclear = autoclear == "1";
  out.partscan = partscan == "1";
  out.direct_io = dio == "1";
  return Ok();
}

}  // namespace

Failure LoopList(std::vector<LoopStatus>& out) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir("/sys/block"), closedir);
  if (!dir) return Fail(errno, "opendir", "/sys/block");
  out.clear();
  errno = 0;
  while (const struct dirent* entry = readdir(dir.get())) {
    unsigned number = 0;
    char rest = 0;
    if (sscanf(entry->d_name, "loop%u%c", &number, &rest) != 1) continue;
    LoopStatus status;
    bool attached = false;
    if (Failure f = ReadSysfsStatus(number, status, attached)) return f;
    if (attached) out.push_back(std::move(status));
    errno = 0;
  }
  if (errno != 0) return Fail(errno, "readdir", "/sys/block");
  std::sort(out.begin(), out.end(),
            [](const LoopStatus& a, const LoopStatus& b) { return a.number < b.number; });
  return Ok();
}

}  // namespace strata
