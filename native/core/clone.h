// Copying file data cheaply: a reflink (FICLONE) where the filesystem shares
// extents, else an in-kernel copy (copy_file_range), else read/write.
#pragma once
#include <cstdint>
#include <string>

#include "result.h"

namespace strata {

// kAuto tries each method in turn; kReflink only FICLONE; kCopy only
// read/write; kNoReflink copy_file_range, then read/write (kAuto once FICLONE
// is known to fail).
enum class CloneMode { kAuto, kReflink, kCopy, kNoReflink };
enum class CloneMethod { kFiclone, kCopyFileRange, kCopy };

const char* CloneMethodName(CloneMethod method);

// Copies the regular file `src` to the new file `dst` (which must not exist),
// with the source's permission bits. The copies skip holes, so sparse files
// stay sparse. On failure `dst` is removed. `bytes` is the file's length.
Failure CloneFile(const std::string& src, const std::string& dst, CloneMode mode,
                  CloneMethod& used, uint64_t& bytes);

// The data step of CloneFile on open files: copies the regular file open for
// reading as `in`, `size` bytes long when the caller looked, into the empty
// file open for writing as `out`. `out` keeps its mode and stays on failure.
// `in` must not be in O_NONBLOCK mode unless `mode` is kReflink. `src` and
// `dst` only name the files in errors.
Failure CloneData(int in, int out, uint64_t size, CloneMode mode, CloneMethod& used,
                  uint64_t& bytes, const std::string& src, const std::string& dst);

// FICLONERANGE: shares `length` bytes of `src_fd` at `src_offset` into
// `dst` (opened, or created, for writing) at `dst_offset`; a length of 0 means
// to the end of the source. Offsets and length must be block aligned.
// `src_name` only names the source in errors.
Failure CloneRange(int src_fd, const std::string& src_name, uint64_t src_offset,
                   const std::string& dst, uint64_t dst_offset, uint64_t length);

// As above, opening the source by path.
Failure CloneRange(const std::string& src, uint64_t src_offset,
                   const std::string& dst, uint64_t dst_offset, uint64_t length);

// Whether `dir`'s filesystem supports FICLONE: clones between two temporary
// files made (and unlinked at once) in `dir`.
Failure ProbeReflink(const std::string& dir, bool& supported);

}  // namespace strata
