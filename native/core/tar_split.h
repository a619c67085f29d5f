// tar-split: everything of a layer tar that is not file content, plus where
// each file's content lives in the applied directory, so the tar can be
// rebuilt byte-exact from the directory (and its sha256 still equals the
// layer's DiffID).
//
// Serialized format (all integers are unsigned LEB128 varints unless noted):
//   magic   "STSPLIT2" (8 bytes; "STSPLIT1": the same records, checksum version 1)
//   records, each starting with one kind byte:
//     0x01 RAW     len, len bytes        emitted verbatim (headers, PAX/GNU
//                                        extension blocks, padding, the
//                                        end-of-archive blocks, trailing bytes)
//     0x02 FILE    path_len, path, size, checksum (8 bytes, little endian)
//                                        emit bytes [0, size) of the regular
//                                        file at `path` (relative to the layer
//                                        directory, resolved inside it)
//     0x03 SPARSE  path_len, path, count, count x (offset, length), checksum
//                                        emit the listed ranges of the file, in
//                                        order (a sparse entry's stored data)
//     0x04 ZEROS   count                 emit count zero bytes (runs of 32 or
//                                        more inside headers and padding)
//     0x00 END     no more records
// The checksum is a fast 64-bit hash of the emitted payload (ContentChecksum,
// version 2; version 1 in "STSPLIT1" tar-splits, still read) that names the
// changed file when the directory no longer matches; the
// stream's sha256 against the DiffID remains the real check. Paths are the
// files' real paths (symlinked parents resolved). lib/archive hands the
// serialized form out raw-deflated (zlib deflateRaw, level 1).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "result.h"
#include "sha256.h"

namespace strata {

// A streaming 64-bit hash, independent of how the input is chunked. Four
// independent lanes over 32-byte blocks keep it well above memory speed.
// Version 2 runs each lane through CRC32C (the CPU's crc32 instruction where
// it has one, several times faster than version 1's multiplies: the applier's
// thread spends less of an import on it); version 1 checks older tar-splits.
class ContentChecksum {
 public:
  static constexpr int kCurrentVersion = 2;
  explicit ContentChecksum(int version = kCurrentVersion);
  void Update(const uint8_t* data, size_t size);
  uint64_t Final() const;

 private:
  void Blocks(const uint8_t* data, size_t count);
  int version_;
  uint64_t lanes_[4] = {0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL,
                        0xa4093822299f31d0ULL, 0x082efa98ec4e6c89ULL};
  uint64_t total_ = 0;
  uint8_t tail_[32] = {};
  size_t tail_size_ = 0;
};

// openat2 with RESOLVE_IN_ROOT: `path` is resolved as if `root` were "/", so
// neither "..", absolute symlinks nor magic links can leave it. Returns the
// new fd or -1 with errno set.
int OpenInRoot(int root, const std::string& path, int flags);

struct SparseSegment {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Records built while applying; a FILE/SPARSE record whose file gets replaced
// later in the same archive is turned into RAW with the bytes it had.
class TarSplitBuilder {
 public:
  void AddRaw(const uint8_t* data, size_t size);
  // Returns the record's index, for ConvertToRaw.
  size_t AddFile(const std::string& path, uint64_t size, uint64_t checksum);
  size_t AddSparse(const std::string& path, std::vector<SparseSegment> segments,
                   uint64_t checksum);
  // Reads the record's payload from `file_fd` and keeps it as RAW bytes.
  Failure ConvertToRaw(size_t index, int file_fd);
  // Serializes the records, releasing each as it goes to keep the peak low.
  std::string Take();

 private:
  enum class Kind : uint8_t { Raw = 1, File = 2, Sparse = 3, Zeros = 4 };
  struct Record {
    Kind kind;
    std::string bytes;  // RAW bytes, or the path for FILE/SPARSE
    uint64_t zeros = 0;  // ZEROS count
    std::vector<SparseSegment> segments;  // FILE: one segment at offset 0
    uint64_t checksum = 0;
  };
  void AppendRaw(const uint8_t* data, size_t size);
  std::vector<Record> records_;
};

// Why an export stopped: `code` is ERR_LAYER_CONTENT_CHANGED for a directory
// that no longer matches, ERR_ARCHIVE_SPLIT_CORRUPT for a bad tar-split, or
// empty for a plain syscall failure (then the returned Failure says which).
struct ExportProblem {
  std::string code;
  std::string message;
  std::string entry;
};

// Replays a serialized tar-split against a directory. Any range of the tar
// can be rebuilt on its own, and several ranges at once on different threads:
// an export reads its segments in parallel, each hashed as it is read.
class TarExporter {
 public:
  // Parses and validates `split`; `root` is the layer directory.
  Failure Open(const std::string& root, std::string split, ExportProblem& problem);
  // Bytes of the whole tar.
  uint64_t size() const { return size_; }
  // Writes bytes [offset, offset + length) of the tar (within size()) to
  // `out`, feeding them to `hash` (if not null) as they are read. Each file
  // is checked for its type and size only: the caller checks the range's
  // SHA-256, and on a mismatch has CheckRange name the file. Safe to call
  // from several threads at once, not with Close.
  Failure ReadRange(uint64_t offset, size_t length, char* out, Sha256* hash,
                    ExportProblem& problem) const;
  // Checks the content checksum of every file with content in the range, to
  // name the one that changed when a range's SHA-256 did not match.
  Failure CheckRange(uint64_t offset, size_t length, ExportProblem& problem) const;
  // Releases the root fd now (see TarApplier::Close).
  void Close() { root_ = Fd(); }

 private:
  struct Step {
    bool raw;                     // RAW or ZEROS, else FILE/SPARSE
    bool zeros;
    size_t raw_offset, raw_size;  // into split_ (RAW) or zero count
    std::string path;
    std::vector<SparseSegment> segments;
    uint64_t checksum;
    uint64_t start;  // offset of its first byte in the tar
    uint64_t size;   // bytes it emits
  };
  Failure OpenFile(const Step& step, Fd& file, ExportProblem& problem) const;
  // Emits `step`'s bytes [from, from + n) to `out` (and `hash`).
  Failure EmitStep(const Step& step, uint64_t from, uint64_t n, char* out, Sha256* hash,
                   ExportProblem& problem) const;
  // The index of the step holding tar byte `offset`.
  size_t StepAt(uint64_t offset) const;

  Fd root_;
  std::string split_;
  std::vector<Step> steps_;
  uint64_t size_ = 0;
  int checksum_version_ = ContentChecksum::kCurrentVersion;  // from the magic
};

}  // namespace strata
