// Copying a whole directory tree (the vfs storage driver's hot path), with a
// small pool of threads inside one call.
#pragma once
#include <cstdint>
#include <string>

#include "result.h"

namespace strata {

struct TreeCopyStats {
  uint64_t files = 0;       // regular files whose data was copied
  uint64_t dirs = 0;        // directories below the root
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;   // extra names linked to an already copied inode
  uint64_t specials = 0;    // device nodes, fifos, sockets
  uint64_t bytes = 0;       // file lengths copied (holes included)
  uint64_t reflinked = 0;   // files cloned with FICLONE
  uint64_t copy_ranged = 0; // files copied with copy_file_range
  uint64_t copied = 0;      // files copied with read/write
};

// Copies the tree below the directory `src` into `dst` (which must not exist,
// or be an empty directory), keeping file types, hard links, owners, modes
// (setuid included), extended attributes (security.capability and trusted.*
// included), nanosecond timestamps and holes. File data is reflinked where
// the filesystem can, else copied in the kernel, else read and written,
// decided per file. Symlinks inside `src` are copied, never followed; mounts
// below `src` are copied through. An xattr `dst` cannot store fails the copy.
// `threads` workers share the work (0: min(4, hardware threads), or one
// for reflinks into btrfs, which a second worker only slows down); with
// more than one on xfs, workers prefer directories whose files, and whose
// copies, are in allocation groups no other worker is cloning from or
// creating in. Workers are threads of their own, each (from Linux 5.9) with
// a file table of its own: none of the caller's fds are open in it. On failure
// `dst` is left partly copied for the caller to remove. Paths longer than
// PATH_MAX fail with ENAMETOOLONG (files are opened by path, see clone.h).
// With `reflink` false every byte is read and written: no extent is shared
// with `src`, not even by copy_file_range (a full copy, on any filesystem).
Failure CopyTree(const std::string& src, const std::string& dst, unsigned threads, bool reflink,
                 TreeCopyStats& stats);

}  // namespace strata
