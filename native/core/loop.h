// Loop block devices: attach a backing file (LOOP_CONFIGURE), detach, query.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "result.h"

namespace strata {

struct LoopOptions {
  bool read_only = false;
  bool autoclear = false;  // detach when the last holder closes the device
  bool direct_io = false;
  uint64_t offset = 0;      // where the device starts in the backing file
  uint64_t size_limit = 0;  // 0: up to the end of the file
  uint32_t block_size = 0;  // 0: the kernel's default (512)
};

struct LoopStatus {
  std::string device;  // /dev/loopN
  uint32_t number = 0;
  std::string backing_file;
  uint64_t offset = 0;
  uint64_t size_limit = 0;
  bool read_only = false;
  bool autoclear = false;
  bool partscan = false;
  bool direct_io = false;
};

// Attaches `file` to a free loop device (partition scanning off), making the
// /dev node if devtmpfs did not. `device_fd` is left holding the device open:
// with autoclear the kernel detaches it at its last close, so the caller
// keeps it until something else (a mount) holds the device.
Failure LoopAttach(const std::string& file, const LoopOptions& options,
                   std::string& device, uint32_t& number, Fd& device_fd);

// LOOP_CLR_FD; if the device is still in use the kernel detaches it at its
// last close instead.
Failure LoopDetach(const std::string& device);

// LOOP_GET_STATUS64 (ENXIO when nothing is attached).
Failure LoopGetStatus(const std::string& device, LoopStatus& out);

// Every attached loop device, from /sys/block/loop*/loop/, by number.
Failure LoopList(std::vector<LoopStatus>& out);

}  // namespace strata
