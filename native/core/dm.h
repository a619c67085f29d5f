// Device-mapper through the ioctls of /dev/mapper/control (<linux/dm-ioctl.h>),
// without libdevmapper or udev: this layer makes and removes the
// /dev/mapper/<name> nodes itself.
//
// A failed DM ioctl is reported with the command's name as the Failure's
// syscall (for example "DM_DEV_REMOVE") and the device name as its path; the
// binding presents it as syscall "ioctl". The kernel says why a table load or
// a target message failed only in its log: `reason` gets those lines.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "result.h"

namespace strata {

// One line of a table: `length` sectors from `start` mapped by target `type`.
// For a status query, `text` is the target's status; otherwise its params.
struct DmTarget {
  uint64_t start = 0;
  uint64_t length = 0;
  std::string type;
  std::string text;
};

struct DmInfo {
  std::string name;
  std::string uuid;
  uint32_t major = 0;
  uint32_t minor = 0;
  int32_t open_count = 0;
  uint32_t event_nr = 0;
  uint32_t target_count = 0;
  bool suspended = false;
  bool read_only = false;
  bool active_table = false;
  bool inactive_table = false;
  bool deferred_remove = false;
};

struct DmListed {
  std::string name;
  uint32_t major = 0;
  uint32_t minor = 0;
};

// Where this layer puts a device's node.
std::string DmNodePath(const std::string& name);

// The driver's ioctl interface version (major, minor, patch).
Failure DmVersion(uint32_t (&version)[3]);

// DM_DEV_CREATE, then mknod /dev/mapper/<name>. The device has no table yet.
Failure DmCreate(const std::string& name, const std::string& uuid, DmInfo& info);

// DM_TABLE_LOAD into the inactive slot; a resume makes it live.
Failure DmLoadTable(const std::string& name, const std::vector<DmTarget>& targets,
                    bool read_only, std::string& reason);

// DM_DEV_SUSPEND with and without DM_SUSPEND_FLAG. Suspending waits for
// in-flight I/O and freezes a mounted filesystem.
Failure DmSuspend(const std::string& name, DmInfo& info);
Failure DmResume(const std::string& name, DmInfo& info);

// DM_DEV_REMOVE, then unlinks the node. With `deferred`, a device still open
// is removed by the kernel at its last close (`was_deferred` tells); its node
// goes now, open fds keep working.
Failure DmRemove(const std::string& name, bool deferred, bool& was_deferred);

// DM_DEV_STATUS.
Failure DmStatus(const std::string& name, DmInfo& info);

// DM_TABLE_STATUS: each target with its status, or with its table params.
Failure DmTableStatus(const std::string& name, bool table, DmInfo& info,
                      std::vector<DmTarget>& targets);

// DM_TARGET_MSG to the target at `sector` (thin-pool: "create_thin 0", ...).
Failure DmMessage(const std::string& name, uint64_t sector,
                  const std::string& message, std::string& response,
                  std::string& reason);

// DM_LIST_DEVICES.
Failure DmList(std::vector<DmListed>& devices);

}  // namespace strata
