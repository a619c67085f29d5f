// Applies a layer tar stream (ustar, GNU, PAX) into a directory in one pass,
// chunk by chunk, while recording its tar-split. Every path is resolved inside
// the directory by fds (openat2 RESOLVE_IN_ROOT for parents, the final
// component never followed), so hostile archives cannot touch anything outside.
//
// Docker-compatible choices: a leading "/" is dropped (paths are relative to
// the root); ".." is resolved lexically and an escape is ERR_ARCHIVE_UNSAFE_PATH;
// missing parents are created root-owned 0755; a later entry replaces an
// earlier one at the same path, except that a directory over a directory
// keeps its contents; hard links take their target's metadata; numeric ids
// are used, names ignored; an xattr refused with EPERM is skipped; top-level
// AUFS metadata (.wh..wh.*) is skipped; access times are never older than
// modification times.
//
// End of stream: like Go's archive/tar (hence Docker), one zero block ends the
// archive; a second block must then be zero too; bytes after the end blocks
// are kept in the tar-split. A stream that stops at a header boundary without
// any zero block is rejected as truncated (Go would accept it; a cut layer
// would otherwise look complete when no DiffID is known).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "result.h"
#include "digest_chain.h"
#include "tar_split.h"

namespace strata {

enum class WhiteoutMode {
  Overlay,  // `.wh.x` -> char device 0/0 `x`; `.wh..wh..opq` -> trusted.overlay.opaque=y
  Remove,   // delete `x`; empty the directory of what this layer did not add
  // The directory already holds the archive's content (a container's changes
  // adopted as a layer): nothing is written; the stream is parsed and
  // checksummed, and its tar-split recorded against the directory.
  Index,
};

// Why applying stopped. `code` is an ERR_ARCHIVE_* name; for a failed syscall
// it is ERR_ARCHIVE_APPLY and the Failure returned says which call and errno.
struct TarProblem {
  std::string code;
  std::string message;
  std::string entry;
};

struct TarStats {
  uint64_t entries = 0;
  uint64_t content_size = 0;
  // "sha256:..." of the stream, when the applier hashes: in index mode, where
  // this thread has little else to do while the caller's is busy writing the
  // archive, or when asked (the caller hands over files' content unread).
  std::string diff_id;
  std::string checkpoints;  // with diff_id: its SHA-256 checkpoints (digest_chain.h)
};

class TarApplier {
 public:
  // Opens `dir` (an existing directory) as the root of everything applied.
  // The stream is hashed here in index mode, or with `hash`.
  Failure Open(const std::string& dir, WhiteoutMode mode, bool hash = false);
  // Parses and applies `size` bytes of the tar stream; state carries over.
  Failure Write(const uint8_t* data, size_t size);
  // The next `size` bytes of the stream are the content of the file at
  // `path`, read here rather than handed over by the caller (a commit in
  // place: the container's files stay out of JS), in pieces into a reused
  // buffer, and parsed like Write's. The file must be exactly `size` bytes
  // long: one that changed size since its header was written is
  // ERR_ARCHIVE_SOURCE_CHANGED.
  Failure WriteFile(const std::string& path, uint64_t size);
  // Checks the stream ended properly, sets directory times, syncfs(dir),
  // and serializes the tar-split into `split`.
  Failure Finish(TarStats& stats, std::string& split);
  // Releases every fd now: the caller may unmount the filesystem next, and
  // must not wait for the garbage collector to drop the object.
  void Close() {
    file_ = Fd();
    cached_parent_fd_ = Fd();
    root_ = Fd();
  }
  const TarProblem& problem() const { return problem_; }

 private:
  struct Entry {
    std::string name;  // as in the archive, for messages
    std::string path;  // normalized, relative to the root ("" = the root)
    std::string link;  // normalized for hardlinks, verbatim for symlinks
    char type = '0';
    uint32_t mode = 0;
    int64_t uid = 0, gid = 0;
    int64_t mtime_sec = 0, atime_sec = 0;
    long mtime_nsec = 0, atime_nsec = 0;
    bool has_atime = false;
    uint32_t devmajor = 0, devminor = 0;
    uint64_t size = 0;       // bytes of payload in the archive
    uint64_t real_size = 0;  // the file's size (differs for sparse files)
    bool sparse = false;
    bool sparse_map_in_data = false;  // PAX GNU.sparse 1.0
    std::vector<SparseSegment> segments;
    std::vector<std::pair<std::string, std::string>> xattrs;
  };
  enum class State { Header, SparseExt, ExtData, SparseMap, Payload, Skip, Padding, End, Failed };

  Failure Problem(const std::string& code, const std::string& entry,
                  const std::string& message);
  Failure SysProblem(Failure f, const std::string& entry);
  Failure CheckWritable();
  Failure OnHeader();
  Failure OnSparseExtBlock();
  Failure OnExtData();
  Failure OnSparseMapBlock();
  Failure StartEntry();
  Failure CheckSegments();
  Failure ParsePax(const std::string& data, std::map<std::string, std::string>& into,
                   std::vector<std::pair<std::string, std::string>>* ordered);
  Failure NormalizePath(const std::string& raw, const std::string& entry, std::string& out);
  Failure RelativePath(int fd, const std::string& entry, std::string& out);
  Failure OpenParent(const std::string& parent, const std::string& entry, int& fd,
                     std::string& real);
  Failure RemoveExisting(int parent, const std::string& name, const std::string& path,
                         bool keep_dir, bool& kept_dir);
  Failure RemoveTree(int parent, const std::string& name, const std::string& path);
  Failure KeepTrackedContent(const std::string& path);
  Failure ApplyWhiteout(const std::string& parent, const std::string& name);
  Failure RemoveNotAdded(int dir, const std::string& path);
  Failure CreateEntry();
  Failure IndexEntry();
  Failure BeginPayload();
  Failure SkipPayload();
  Failure SetMetadata(int parent, const std::string& name, int fd);
  Failure WritePayload(const uint8_t* data, size_t size);
  Failure FinishFile();
  void Record(const uint8_t* data, size_t size) { split_.AddRaw(data, size); }

  Fd root_;
  std::string root_path_;  // as /proc/self/fd shows it, for RelativePath
  WhiteoutMode mode_ = WhiteoutMode::Overlay;
  State state_ = State::Header;
  bool finished_ = false;
  TarProblem problem_;
  std::unique_ptr<DigestChainBuilder> hash_;  // index mode, or asked to
  TarSplitBuilder split_;
  TarStats stats_;

  std::vector<uint8_t> file_buffer_;  // WriteFile's reads, allocated on first use

  uint8_t block_[512];
  size_t block_fill_ = 0;
  int zero_blocks_ = 0;

  // Extensions that apply to the next entry.
  std::string long_name_, long_link_;
  bool has_long_name_ = false, has_long_link_ = false;
  std::map<std::string, std::string> pax_, global_pax_;
  std::vector<std::pair<std::string, std::string>> pax_ordered_;
  bool pending_extension_ = false;  // an L/K/x header awaits its entry
  char ext_type_ = 0;               // of the extension being read
  std::string ext_data_;
  uint64_t ext_size_ = 0, ext_remaining_ = 0;  // data bytes; data + padding left

  Entry entry_;
  uint8_t header_[512];  // the entry's own header, kept for sparse extensions
  uint64_t payload_remaining_ = 0;  // bytes of the current entry's data left
  uint64_t padding_remaining_ = 0;
  std::string sparse_map_text_;
  Fd file_;
  size_t segment_ = 0;
  uint64_t done_in_segment_ = 0;
  uint64_t unflushed_ = 0;  // bytes written since writeback last started
  ContentChecksum checksum_;

  // Parent directory cache: most entries share the previous entry's parent.
  std::string cached_parent_, cached_parent_real_;
  Fd cached_parent_fd_;
  bool cache_valid_ = false;

  std::unordered_set<std::string> added_;      // paths this layer created
  std::map<std::string, size_t> tracked_;      // path -> FILE/SPARSE record
  struct Times {
    int64_t atime_sec, mtime_sec;
    long atime_nsec, mtime_nsec;
  };
  std::map<std::string, Times> dir_times_;     // applied at Finish
};

}  // namespace strata
