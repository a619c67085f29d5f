#include "tar_split.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

namespace strata {

int OpenInRoot(int root, const std::string& path, int flags) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const char* p = path.empty() ? "." : path.c_str();
  return static_cast<int>(syscall(SYS_openat2, root, p, &how, sizeof how));
}

// ---- ContentChecksum ----

static inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t Mix(uint64_t state, uint64_t word) {
  return Rotl(state ^ (word * 0x9e3779b97f4a7c15ULL), 29) * 0xbf58476d1ce4e5b9ULL;
}

// Version 1: a multiply-rotate step per lane and 8-byte word.
static void MixBlocks(uint64_t lanes[4], const uint8_t* data, size_t count) {
  // Lanes in locals: uint8_t data may alias the caller's lanes, which would
  // force a store and reload of every lane per block.
  uint64_t a = lanes[0], b = lanes[1], c = lanes[2], d = lanes[3];
  for (; count > 0; data += 32, count--) {
    uint64_t w[4];
    memcpy(w, data, 32);
    a = Mix(a, w[0]);
    b = Mix(b, w[1]);
    c = Mix(c, w[2]);
    d = Mix(d, w[3]);
  }
  lanes[0] = a, lanes[1] = b, lanes[2] = c, lanes[3] = d;
}

// Version 2: CRC32C (Castagnoli, reflected, no inversion) of each lane's
// words, as the SSE4.2 crc32 instruction computes it.
static const uint32_t* Crc32cTable() {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t crc = i;
      for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
      t[i] = crc;
    }
    return t;
  }();
  return table.data();
}

static inline uint64_t Crc32cWord(uint64_t crc, uint64_t word) {
  const uint32_t* table = Crc32cTable();
  uint32_t c = static_cast<uint32_t>(crc);
  for (int i = 0; i < 8; i++, word >>= 8) c = table[(c ^ word) & 0xff] ^ (c >> 8);
  return c;
}

static void CrcBlocksPortable(uint64_t lanes[4], const uint8_t* data, size_t count) {
  for (; count > 0; data += 32, count--) {
    uint64_t w[4];
    memcpy(w, data, 32);
    for (int i = 0; i < 4; i++) lanes[i] = Crc32cWord(lanes[i], w[i]);
  }
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static void CrcBlocksSse42(uint64_t lanes[4], const uint8_t* data,
                                                             size_t count) {
  uint64_t a = lanes[0], b = lanes[1], c = lanes[2], d = lanes[3];
  for (; count > 0; data += 32, count--) {
    uint64_t w[4];
    memcpy(w, data, 32);
    a = __builtin_ia32_crc32di(a, w[0]);
    b = __builtin_ia32_crc32di(b, w[1]);
    c = __builtin_ia32_crc32di(c, w[2]);
    d = __builtin_ia32_crc32di(d, w[3]);
  }
  lanes[0] = a, lanes[1] = b, lanes[2] = c, lanes[3] = d;
}
#endif

static void CrcBlocks(uint64_t lanes[4], const uint8_t* data, size_t count) {
#if defined(__x86_64__)
  static const bool sse42 = __builtin_cpu_supports("sse4.2");
  if (sse42) return CrcBlocksSse42(lanes, data, count);
#endif
  CrcBlocksPortable(lanes, data, count);
}

ContentChecksum::ContentChecksum(int version) : version_(version) {
  if (version_ == 2)
    for (uint64_t& lane : lanes_) lane &= 0xffffffffu;  // CRC state is 32 bits
}

void ContentChecksum::Blocks(const uint8_t* data, size_t count) {
  if (version_ == 1) MixBlocks(lanes_, data, count);
  else CrcBlocks(lanes_, data, count);
}

void ContentChecksum::Update(const uint8_t* data, size_t size) {
  total_ += size;
  if (tail_size_ > 0) {
    size_t take = std::min(size, sizeof tail_ - tail_size_);
    memcpy(tail_ + tail_size_, data, take);
    tail_size_ += take;
    data += take;
    size -= take;
    if (tail_size_ < sizeof tail_) return;
    Blocks(tail_, 1);
    tail_size_ = 0;
  }
  Blocks(data, size / 32);
  data += size / 32 * 32;
  size %= 32;
  memcpy(tail_, data, size);
  tail_size_ = size;
}

uint64_t ContentChecksum::Final() const {
  uint8_t last[32] = {};
  memcpy(last, tail_, tail_size_);
  ContentChecksum copy = *this;
  copy.Blocks(last, 1);
  uint64_t h = total_;
  for (uint64_t lane : copy.lanes_) h = Mix(h, lane);
  return h ^ (h >> 31);
}

// ---- serialization helpers ----

static void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

static void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

namespace {
struct Reader {
  const std::string& s;
  size_t pos = 0;
  bool ok = true;
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= s.size()) break;
      uint8_t b = static_cast<uint8_t>(s[pos++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    ok = false;
    return 0;
  }
  uint64_t U64() {
    if (s.size() - pos < 8) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[pos + i])) << (8 * i);
    pos += 8;
    return v;
  }
  bool Take(uint64_t n, size_t& offset) {
    if (!ok || n > s.size() - pos) return ok = false;
    offset = pos;
    pos += n;
    return true;
  }
};
// Written: "STSPLIT2"; read: both, the digit naming the checksum version.
constexpr char kMagic[] = "STSPLIT2";
constexpr char kMagicV1[] = "STSPLIT1";
constexpr size_t kMagicSize = 8;
}  // namespace

// ---- TarSplitBuilder ----

void TarSplitBuilder::AddRaw(const uint8_t* data, size_t size) {
  constexpr size_t kMinRun = 32;  // shorter zero runs are cheaper kept raw
  size_t i = 0;
  while (i < size) {
    size_t run = 0;
    while (i + run < size && data[i + run] == 0) run++;
    if (run > 0) {
      bool extends = i == 0 && !records_.empty() && records_.back().kind == Kind::Zeros;
      if (extends || run >= kMinRun) {
        if (!extends) records_.push_back(Record{Kind::Zeros, {}, 0, {}, 0});
        records_.back().zeros += run;
      } else {
        AppendRaw(data + i, run);
      }
      i += run;
      continue;
    }
    // Non-zero bytes up to the next long zero run (short runs included).
    size_t end = i;
    while (end < size) {
      if (data[end] != 0) {
        end++;
        continue;
      }
      size_t zeros = 0;
      while (end + zeros < size && data[end + zeros] == 0 && zeros < kMinRun) zeros++;
      if (zeros >= kMinRun) break;
      end += zeros;
    }
    AppendRaw(data + i, end - i);
    i = end;
  }
}

void TarSplitBuilder::AppendRaw(const uint8_t* data, size_t size) {
  if (records_.empty() || records_.back().kind != Kind::Raw)
    records_.push_back(Record{Kind::Raw, {}, 0, {}, 0});
  records_.back().bytes.append(reinterpret_cast<const char*>(data), size);
}

size_t TarSplitBuilder::AddFile(const std::string& path, uint64_t size,
                                uint64_t checksum) {
  records_.push_back(Record{Kind::File, path, 0, {SparseSegment{0, size}}, checksum});
  return records_.size() - 1;
}

size_t TarSplitBuilder::AddSparse(const std::string& path,
                                  std::vector<SparseSegment> segments,
                                  uint64_t checksum) {
  records_.push_back(Record{Kind::Sparse, path, 0, std::move(segments), checksum});
  return records_.size() - 1;
}

Failure TarSplitBuilder::ConvertToRaw(size_t index, int file_fd) {
  Record& r = records_[index];
  std::string bytes;
  for (const SparseSegment& seg : r.segments) {
    size_t start = bytes.size();
    bytes.resize(start + seg.length);
    uint64_t done = 0;
    while (done < seg.length) {
      ssize_t n = pread(file_fd, &bytes[start + done], seg.length - done,
                        static_cast<off_t>(seg.offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Fail(errno, "pread", r.bytes);
      if (n == 0) return Fail(EIO, "pread", r.bytes);
      done += static_cast<uint64_t>(n);
    }
  }
  r.kind = Kind::Raw;
  r.bytes = std::move(bytes);
  r.segments.clear();
  return Ok();
}

std::string TarSplitBuilder::Take() {
  size_t estimate = kMagicSize + 1;
  for (const Record& r : records_) estimate += r.bytes.size() + 20 + 20 * r.segments.size();
  std::string out;
  out.reserve(estimate);
  out.append(kMagic, kMagicSize);
  // Neighbouring RAW records (left by ConvertToRaw) are written as one.
  for (size_t i = 0; i < records_.size(); i++) {
    Record& r = records_[i];
    if (r.kind == Kind::Zeros) {
      out.push_back(static_cast<char>(Kind::Zeros));
      PutVarint(out, r.zeros);
      continue;
    }
    if (r.kind == Kind::Raw) {
      size_t total = r.bytes.size(), j = i + 1;
      for (; j < records_.size() && records_[j].kind == Kind::Raw; j++)
        total += records_[j].bytes.size();
      out.push_back(static_cast<char>(Kind::Raw));
      PutVarint(out, total);
      for (size_t k = i; k < j; k++) {
        out += records_[k].bytes;
        std::string().swap(records_[k].bytes);
      }
      i = j - 1;
      continue;
    }
    out.push_back(static_cast<char>(r.kind));
    PutVarint(out, r.bytes.size());
    out += r.bytes;
    if (r.kind == Kind::File) {
      PutVarint(out, r.segments[0].length);
    } else {
      PutVarint(out, r.segments.size());
      for (const SparseSegment& seg : r.segments) {
        PutVarint(out, seg.offset);
        PutVarint(out, seg.length);
      }
    }
    PutU64(out, r.checksum);
  }
  out.push_back(0);
  records_.clear();
  records_.shrink_to_fit();
  return out;
}

// ---- TarExporter ----

namespace {

// File content is read, checksummed and hashed in pieces small enough to be
// still in the cache for the checksum and the hash.
constexpr size_t kPiece = 256 << 10;

// Past this, a tar offset would not be exact as a JS number.
constexpr uint64_t kMaxTarSize = 1ULL << 53;

Failure Corrupt(ExportProblem& problem, const std::string& why) {
  problem = {"ERR_ARCHIVE_SPLIT_CORRUPT", "tar-split data is corrupt: " + why, ""};
  return Fail(EINVAL, "tar-split");
}

Failure Changed(ExportProblem& problem, const std::string& path, const std::string& why) {
  problem = {"ERR_LAYER_CONTENT_CHANGED", "layer content changed on disk: '" + path + "' " + why, path};
  return Fail(EIO, "export", path);
}

// Reads `n` bytes of a file's stored content (its segments, in order),
// starting `from` bytes in, as pieces into `buf`: one after another when
// `advance`, else each over the last. Calls piece(data, size) for each.
template <typename Piece>
Failure ReadContent(int fd, const std::string& path, const std::vector<SparseSegment>& segments,
                    uint64_t from, uint64_t n, char* buf, bool advance, ExportProblem& problem,
                    Piece&& piece) {
  for (const SparseSegment& seg : segments) {
    if (n == 0) break;
    if (from >= seg.length) {
      from -= seg.length;
      continue;
    }
    uint64_t pos = seg.offset + from;
    uint64_t todo = std::min(seg.length - from, n);
    from = 0;
    while (todo > 0) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(todo, kPiece));
      ssize_t got = pread(fd, buf, want, static_cast<off_t>(pos));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return Fail(errno, "pread", path);
      if (got == 0) return Changed(problem, path, "is shorter than recorded");
      piece(reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(got));
      if (advance) buf += got;
      pos += static_cast<uint64_t>(got);
      todo -= static_cast<uint64_t>(got);
      n -= static_cast<uint64_t>(got);
    }
  }
  return Ok();
}

}  // namespace

Failure TarExporter::Open(const std::string& root, std::string split, ExportProblem& problem) {
  root_ = Fd(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_.valid()) return Fail(errno, "open", root);
  split_ = std::move(split);
  Reader r{split_};
  size_t at = 0;
  if (!r.Take(kMagicSize, at)) return Corrupt(problem, "bad magic");
  if (split_.compare(0, kMagicSize, kMagic) == 0) checksum_version_ = 2;
  else if (split_.compare(0, kMagicSize, kMagicV1) == 0) checksum_version_ = 1;
  else return Corrupt(problem, "bad magic");
  // Steps are appended with their place in the tar; their sizes stay below
  // kMaxTarSize, each and in total.
  auto add = [&](Step step, uint64_t size) {
    if (size > kMaxTarSize - size_) return false;
    step.start = size_;
    step.size = size;
    size_ += size;
    steps_.push_back(std::move(step));
    return true;
  };
  for (;;) {
    if (r.pos >= split_.size()) return Corrupt(problem, "missing end record");
    uint8_t kind = static_cast<uint8_t>(split_[r.pos++]);
    if (kind == 0) break;
    if (kind == 1) {
      uint64_t n = r.Varint();
      if (!r.Take(n, at)) return Corrupt(problem, "raw record overruns the data");
      if (!add(Step{true, false, at, static_cast<size_t>(n), {}, {}, 0, 0, 0}, n))
        return Corrupt(problem, "the tar would be too large");
      continue;
    }
    if (kind == 4) {
      uint64_t n = r.Varint();
      if (!r.ok || n > (1ULL << 40)) return Corrupt(problem, "bad zero run");
      if (!add(Step{true, true, 0, static_cast<size_t>(n), {}, {}, 0, 0, 0}, n))
        return Corrupt(problem, "the tar would be too large");
      continue;
    }
    if (kind != 2 && kind != 3) return Corrupt(problem, "unknown record kind " + std::to_string(kind));
    uint64_t path_len = r.Varint();
    if (!r.Take(path_len, at) || path_len == 0 || path_len > 4096)
      return Corrupt(problem, "bad path");
    Step step{false, false, 0, 0, split_.substr(at, path_len), {}, 0, 0, 0};
    if (step.path.find('\0') != std::string::npos || step.path[0] == '/')
      return Corrupt(problem, "bad path");
    uint64_t size = 0;
    bool sane = true;
    if (kind == 2) {
      step.segments.push_back(SparseSegment{0, r.Varint()});
    } else {
      uint64_t count = r.Varint();
      if (count > split_.size()) return Corrupt(problem, "bad segment count");
      for (uint64_t i = 0; i < count && r.ok; i++) {
        SparseSegment seg;
        seg.offset = r.Varint();
        seg.length = r.Varint();
        step.segments.push_back(seg);
      }
    }
    for (const SparseSegment& seg : step.segments) {
      sane = sane && seg.length < kMaxTarSize && seg.offset < kMaxTarSize && size < kMaxTarSize;
      size += seg.length;
    }
    step.checksum = r.U64();
    if (!r.ok) return Corrupt(problem, "truncated record");
    if (!sane || !add(std::move(step), size)) return Corrupt(problem, "the tar would be too large");
  }
  if (r.pos != split_.size()) return Corrupt(problem, "bytes after the end record");
  return Ok();
}

Failure TarExporter::OpenFile(const Step& step, Fd& file, ExportProblem& problem) const {
  file = Fd(OpenInRoot(root_.get(), step.path, O_RDONLY | O_NOFOLLOW));
  if (!file.valid()) {
    if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR)
      return Changed(problem, step.path, "is missing");
    return Fail(errno, "openat2", step.path);
  }
  struct stat st;
  if (fstat(file.get(), &st) != 0) return Fail(errno, "fstat", step.path);
  if (!S_ISREG(st.st_mode)) return Changed(problem, step.path, "is no longer a regular file");
  uint64_t end = 0;
  for (const SparseSegment& seg : step.segments) end = std::max(end, seg.offset + seg.length);
  bool sparse = step.segments.size() != 1 || step.segments[0].offset != 0;
  if (sparse ? static_cast<uint64_t>(st.st_size) < end
             : static_cast<uint64_t>(st.st_size) != end)
    return Changed(problem, step.path, "has a different size");
  posix_fadvise(file.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  return Ok();
}

size_t TarExporter::StepAt(uint64_t offset) const {
  // The first step starting at or after `offset`, unless the one before runs past it.
  auto first = std::lower_bound(steps_.begin(), steps_.end(), offset,
                                [](const Step& s, uint64_t off) { return s.start < off; });
  size_t i = static_cast<size_t>(first - steps_.begin());
  if (i > 0 && steps_[i - 1].start + steps_[i - 1].size > offset) i--;
  return i;
}

Failure TarExporter::EmitStep(const Step& step, uint64_t from, uint64_t n, char* out, Sha256* hash,
                              ExportProblem& problem) const {
  if (step.raw) {
    if (step.zeros) memset(out, 0, n);
    else memcpy(out, split_.data() + step.raw_offset + from, n);
    if (hash) hash->Update(reinterpret_cast<const uint8_t*>(out), n);
    return Ok();
  }
  Fd file;
  if (Failure f = OpenFile(step, file, problem)) return f;
  return ReadContent(file.get(), step.path, step.segments, from, n, out, true, problem,
                     [&](const uint8_t* data, size_t size) {
                       if (hash) hash->Update(data, size);
                     });
}

Failure TarExporter::ReadRange(uint64_t offset, size_t length, char* out, Sha256* hash,
                               ExportProblem& problem) const {
  if (offset > size_ || length > size_ - offset) return Fail(EINVAL, "export", "range beyond the tar");
  uint64_t end = offset + length;
  for (size_t i = StepAt(offset); i < steps_.size(); i++) {
    const Step& step = steps_[i];
    // A step starting at `end` is the next range's, unless the tar ends there.
    if (step.start > end || (step.start == end && (end < size_ || step.size > 0))) break;
    uint64_t from = offset > step.start ? offset - step.start : 0;
    uint64_t n = std::min(step.size - from, end - (step.start + from));
    if (Failure f = EmitStep(step, from, n, out, hash, problem)) return f;
    out += n;
  }
  return Ok();
}

Failure TarExporter::CheckRange(uint64_t offset, size_t length, ExportProblem& problem) const {
  if (offset > size_ || length > size_ - offset) return Fail(EINVAL, "export", "range beyond the tar");
  uint64_t end = offset + length;
  std::vector<char> buf(kPiece);
  for (size_t i = StepAt(offset); i < steps_.size() && steps_[i].start < end; i++) {
    const Step& step = steps_[i];
    if (step.raw) continue;
    Fd file;
    if (Failure f = OpenFile(step, file, problem)) return f;
    ContentChecksum checksum(checksum_version_);
    Failure f = ReadContent(file.get(), step.path, step.segments, 0, step.size, buf.data(), false, problem,
                            [&](const uint8_t* data, size_t size) { checksum.Update(data, size); });
    if (f) return f;
    if (checksum.Final() != step.checksum) return Changed(problem, step.path, "has different content");
  }
  return Ok();
}

}  // namespace strata
