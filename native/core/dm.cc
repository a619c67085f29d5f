#include "dm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace strata {
namespace {

constexpr size_t Align8(size_t n) { return (n + 7) & ~size_t{7}; }

constexpr size_t kHeaderSize = Align8(sizeof(dm_ioctl));
constexpr size_t kFirstBufferSize = 16 * 1024;
constexpr size_t kMaxBufferSize = 16 * 1024 * 1024;

// The memory of one ioctl: the dm_ioctl header, then the command's payload
// in, then its results out (both at header->data_start). 8-byte aligned, as
// the kernel's structures inside it are.
class DmBuffer {
 public:
  explicit DmBuffer(size_t size) : words_(Align8(size) / 8) {}
  dm_ioctl* header() { return reinterpret_cast<dm_ioctl*>(words_.data()); }
  size_t size() const { return words_.size() * 8; }
  char* data() { return reinterpret_cast<char*>(words_.data()) + header()->data_start; }
  // How many result bytes the kernel wrote after data_start.
  size_t data_length() {
    const dm_ioctl* h = header();
    return h->data_size > h->data_start ? h->data_size - h->data_start : 0;
  }

 private:
  std::vector<uint64_t> words_;
};

// What goes into a command's header besides the buffer's geometry.
struct Request {
  const char* command;  // "DM_DEV_CREATE": names the failure
  unsigned long code;
  const std::string& name;  // "" for commands about no device
  uint32_t flags = 0;
  uint32_t target_count = 0;
  std::string uuid = {};
};

// Runs one device-mapper command with `payload` after the header. Commands
// that only read are repeated with a bigger buffer while the kernel reports
// that their results did not fit; a target message has already run then, so
// it fails with ENOBUFS instead.
Failure Ioctl(const Request& request, const std::string& payload, bool may_repeat,
              DmBuffer& buffer) {
  if (request.name.size() >= DM_NAME_LEN || request.uuid.size() >= DM_UUID_LEN)
    return Fail(ENAMETOOLONG, request.command, request.name);
  Fd control(open("/dev/mapper/control", O_RDWR | O_CLOEXEC));
  if (!control.valid()) return Fail(errno, "open", "/dev/mapper/control");

  size_t size = std::max(kFirstBufferSize, kHeaderSize + payload.size());
  for (;;) {
    buffer = DmBuffer(size);
    dm_ioctl* h = buffer.header();
    // Version 4.0.0: every 4.x kernel accepts it; newer features (deferred
    // remove) are refused by older kernels on their own.
    h->version[0] = DM_VERSION_MAJOR;
    h->data_size = static_cast<uint32_t>(buffer.size());
    h->data_start = static_cast<uint32_t>(kHeaderSize);
    h->flags = request.flags;
    h->target_count = request.target_count;
    memcpy(h->name, request.name.data(), request.name.size());
    memcpy(h->uuid, request.uuid.data(), request.uuid.size());
    memcpy(buffer.data(), payload.data(), payload.size());
    if (ioctl(control.get(), request.code, h) != 0)
      return Fail(errno, request.command, request.name);
    if (!(h->flags & DM_BUFFER_FULL_FLAG)) return Ok();
    if (!may_repeat || size >= kMaxBufferSize)
      return Fail(ENOBUFS, request.command, request.name);
    size *= 2;
  }
}

std::string FixedString(const char* chars, size_t capacity) {
  return std::string(chars, strnlen(chars, capacity));
}

void ReadInfo(const dm_ioctl& h, DmInfo& info) {
  info.name = FixedString(h.name, sizeof h.name);
  info.uuid = FixedString(h.uuid, sizeof h.uuid);
  dev_t dev = static_cast<dev_t>(h.dev);
  info.major = major(dev);
  info.minor = minor(dev);
  info.open_count = h.open_count;
  info.event_nr = h.event_nr;
  info.target_count = h.target_count;
  info.suspended = h.flags & DM_SUSPEND_FLAG;
  info.read_only = h.flags & DM_READONLY_FLAG;
  info.active_table = h.flags & DM_ACTIVE_PRESENT_FLAG;
  info.inactive_table = h.flags & DM_INACTIVE_PRESENT_FLAG;
  info.deferred_remove = h.flags & DM_DEFERRED_REMOVE;
}

// Makes /dev/mapper/<name> for the device: there is no udev to do it in the
// VMs and containers this runs in. A node left by an earlier device of the
// same name is replaced.
Failure MakeNode(const std::string& name, uint32_t major_number, uint32_t minor_number) {
  if (mkdir("/dev/mapper", 0755) != 0 && errno != EEXIST)
    return Fail(errno, "mkdir", "/dev/mapper");
  std::string path = DmNodePath(name);
  dev_t dev = makedev(major_number, minor_number);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (S_ISBLK(st.st_mode) && st.st_rdev == dev) return Ok();
    if (unlink(path.c_str()) != 0) return Fail(errno, "unlink", path);
  }
  if (mknod(path.c_str(), S_IFBLK | 0600, dev) != 0) return Fail(errno, "mknod", path);
  return Ok();
}

Failure RemoveNode(const std::string& name) {
  std::string path = DmNodePath(name);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return Fail(errno, "unlink", path);
  return Ok();
}

// The kernel's log lines written while this object lives, from /dev/kmsg:
// device-mapper explains a refused table or message only there. Empty when
// the log cannot be read (not root, no /dev/kmsg).
class KernelLog {
 public:
  KernelLog() : kmsg_(open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)) {
    if (kmsg_.valid()) lseek(kmsg_.get(), 0, SEEK_END);
  }

  // The new "device-mapper: ..." lines, joined with "; ".
  std::string DeviceMapperLines() {
    std::string lines;
    if (!kmsg_.valid()) return lines;
    char record[8192];
    for (;;) {
      ssize_t n = read(kmsg_.get(), record, sizeof record - 1);
      if (n < 0 && errno == EPIPE) continue;  // records overwritten meanwhile
      if (n <= 0) break;
      record[n] = '\0';
      // A record is "prefix;text\n" and optional " KEY=value" lines.
      const char* text = strchr(record, ';');
      if (!text) continue;
      text++;
      std::string line(text, strcspn(text, "\n"));
      if (line.rfind("device-mapper:", 0) != 0) continue;
      if (!lines.empty()) lines += "; ";
      lines += line;
    }
    return lines;
  }

 private:
  Fd kmsg_;
};

}  // namespace

std::string DmNodePath(const std::string& name) { return "/dev/mapper/" + name; }

Failure DmVersion(uint32_t (&version)[3]) {
  DmBuffer buffer(0);
  Failure f = Ioctl({"DM_VERSION", DM_VERSION, ""}, "", false, buffer);
  if (f) return f;
  for (int i = 0; i < 3; i++) version[i] = buffer.header()->version[i];
  return Ok();
}

Failure DmCreate(const std::string& name, const std::string& uuid, DmInfo& info) {
  DmBuffer buffer(0);
  Failure f = Ioctl({"DM_DEV_CREATE", DM_DEV_CREATE, name, 0, 0, uuid}, "", false, buffer);
  if (f) return f;
  ReadInfo(*buffer.header(), info);
  f = MakeNode(name, info.major, info.minor);
  if (f) {
    // Leave nothing behind: a device nobody can open by its path is a leak.
    bool deferred = false;
    DmRemove(name, false, deferred);
  }
  return f;
}

Failure DmLoadTable(const std::string& name, const std::vector<DmTarget>& targets,
                    bool read_only, std::string& reason) {
  // Each dm_target_spec is followed by its params string; `next` is the
  // distance from this spec to the next one.
  std::string payload;
  for (const DmTarget& target : targets) {
    if (target.type.size() >= DM_MAX_TYPE_NAME)
      return Fail(ENAMETOOLONG, "DM_TABLE_LOAD", name);
    dm_target_spec spec{};
    spec.sector_start = target.start;
    spec.length = target.length;
    memcpy(spec.target_type, target.type.data(), target.type.size());
    size_t size = Align8(sizeof spec + target.text.size() + 1);
    spec.next = static_cast<uint32_t>(size);
    size_t at = payload.size();
    payload.resize(at + size, '\0');
    memcpy(&payload[at], &spec, sizeof spec);
    memcpy(&payload[at + sizeof spec], target.text.data(), target.text.size());
  }
  KernelLog log;
  DmBuffer buffer(0);
  Failure f = Ioctl({"DM_TABLE_LOAD", DM_TABLE_LOAD, name, read_only ? DM_READONLY_FLAG : 0u,
                     static_cast<uint32_t>(targets.size())},
                    payload, false, buffer);
  if (f) reason = log.DeviceMapperLines();
  return f;
}

namespace {

Failure Suspend(const std::string& name, bool suspend, DmInfo& info) {
  DmBuffer buffer(0);
  Failure f = Ioctl({"DM_DEV_SUSPEND", DM_DEV_SUSPEND, name, suspend ? DM_SUSPEND_FLAG : 0u},
                    "", false, buffer);
  if (f) return f;
  ReadInfo(*buffer.header(), info);
  return Ok();
}

}  // namespace

Failure DmSuspend(const std::string& name, DmInfo& info) { return Suspend(name, true, info); }

Failure DmResume(const std::string& name, DmInfo& info) { return Suspend(name, false, info); }

Failure DmRemove(const std::string& name, bool deferred, bool& was_deferred) {
  DmBuffer buffer(0);
  Failure f = Ioctl({"DM_DEV_REMOVE", DM_DEV_REMOVE, name, deferred ? DM_DEFERRED_REMOVE : 0u},
                    "", false, buffer);
  if (f) return f;
  // The kernel clears the flag when it removed the device at once.
  was_deferred = buffer.header()->flags & DM_DEFERRED_REMOVE;
  return RemoveNode(name);
}

Failure DmStatus(const std::string& name, DmInfo& info) {
  DmBuffer buffer(0);
  Failure f = Ioctl({"DM_DEV_STATUS", DM_DEV_STATUS, name}, "", false, buffer);
  if (f) return f;
  ReadInfo(*buffer.header(), info);
  return Ok();
}

Failure DmTableStatus(const std::string& name, bool table, DmInfo& info,
                      std::vector<DmTarget>& targets) {
  DmBuffer buffer(0);
  Failure f = Ioctl({"DM_TABLE_STATUS", DM_TABLE_STATUS, name, table ? DM_STATUS_TABLE_FLAG : 0u},
                    "", true, buffer);
  if (f) return f;
  const dm_ioctl& h = *buffer.header();
  ReadInfo(h, info);
  // Here `next` is the offset of the next spec from the first one.
  const char* data = buffer.data();
  size_t length = buffer.data_length();
  size_t offset = 0;
  targets.clear();
  for (uint32_t i = 0; i < h.target_count && offset + sizeof(dm_target_spec) <= length; i++) {
    dm_target_spec spec;
    memcpy(&spec, data + offset, sizeof spec);
    size_t text_at = offset + sizeof spec;
    targets.push_back({spec.sector_start, spec.length,
                       FixedString(spec.target_type, sizeof spec.target_type),
                       FixedString(data + text_at, length - text_at)});
    offset = spec.next;
  }
  return Ok();
}

Failure DmMessage(const std::string& name, uint64_t sector, const std::string& message,
                  std::string& response, std::string& reason) {
  // A dm_target_msg: the sector, then the message text.
  std::string payload(offsetof(dm_target_msg, message), '\0');
  memcpy(&payload[0], &sector, sizeof sector);
  payload += message;
  payload += '\0';
  KernelLog log;
  DmBuffer buffer(0);
  Failure f = Ioctl({"DM_TARGET_MSG", DM_TARGET_MSG, name}, payload, false, buffer);
  if (f) {
    reason = log.DeviceMapperLines();
    return f;
  }
  response.clear();
  if (buffer.header()->flags & DM_DATA_OUT_FLAG)
    response = FixedString(buffer.data(), buffer.data_length());
  return Ok();
}

Failure DmList(std::vector<DmListed>& devices) {
  DmBuffer buffer(0);
  Failure f = Ioctl({"DM_LIST_DEVICES", DM_LIST_DEVICES, ""}, "", true, buffer);
  if (f) return f;
  // dm_name_list records, each `next` bytes after the previous; a first
  // record with dev 0 means there are no devices.
  const char* data = buffer.data();
  size_t length = buffer.data_length();
  size_t name_at = offsetof(dm_name_list, name);
  devices.clear();
  for (size_t offset = 0; offset + name_at <= length;) {
    uint64_t dev;
    uint32_t next;
    memcpy(&dev, data + offset + offsetof(dm_name_list, dev), sizeof dev);
    memcpy(&next, data + offset + offsetof(dm_name_list, next), sizeof next);
    if (dev == 0) break;
    devices.push_back({FixedString(data + offset + name_at, length - offset - name_at),
                       major(static_cast<dev_t>(dev)), minor(static_cast<dev_t>(dev))});
    if (next == 0) break;
    offset += next;
  }
  return Ok();
}

}  // namespace strata
