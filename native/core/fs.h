// Filesystem primitives the storage drivers need: extended attributes (never
// following symlinks), device nodes and overlay whiteouts, statfs, and the
// d_type check overlay requires of its backing filesystem.
#pragma once
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "result.h"

namespace strata {

// Opens `path` with `flags` plus O_NONBLOCK, so that a FIFO (or a device
// waiting for carrier) cannot hang the calling thread, then clears
// O_NONBLOCK again and reports what was opened in `st`.
Failure OpenNonBlocking(const std::string& path, int flags, Fd& out, struct stat& st);

// How SetXattr treats an existing attribute (XATTR_CREATE, XATTR_REPLACE).
enum class XattrMode { kAny, kCreate, kReplace };

Failure GetXattr(const std::string& path, const std::string& name,
                 std::vector<uint8_t>& value);
Failure SetXattr(const std::string& path, const std::string& name,
                 const uint8_t* value, size_t size, XattrMode mode);
Failure ListXattrs(const std::string& path, std::vector<std::string>& names);
Failure RemoveXattr(const std::string& path, const std::string& name);

enum class NodeType { kFile, kChar, kBlock, kFifo, kSocket };

// mknod(2): `perm` is the permission bits (the umask applies, as for mknod).
Failure MakeNode(const std::string& path, NodeType type, mode_t perm,
                 unsigned major, unsigned minor);

// An overlayfs whiteout: a character device 0/0 with mode 0, as the kernel
// and Docker make them.
Failure MakeWhiteout(const std::string& path);

struct FsStats {
  uint64_t type = 0;  // the superblock magic (f_type)
  uint64_t block_size = 0;
  uint64_t blocks = 0;
  uint64_t blocks_free = 0;
  uint64_t blocks_available = 0;
  uint64_t files = 0;
  uint64_t files_free = 0;
  uint64_t name_max = 0;
  uint64_t flags = 0;  // ST_* mount flags
};

Failure StatFs(const std::string& path, FsStats& out);

// A short name for a superblock magic ("ext4", "xfs"...), "unknown" otherwise.
const char* FsTypeName(uint64_t magic);

// Whether readdir on `dir`'s filesystem reports entry types: creates a
// temporary directory with entries inside `dir`, lists it with getdents64,
// and removes it again.
Failure SupportsDType(const std::string& dir, bool& supported);

}  // namespace strata
