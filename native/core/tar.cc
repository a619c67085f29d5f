#include "tar.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "tar_internal.h"

// The stream side of TarApplier: the block state machine, header, PAX, GNU
// and sparse parsing, and the end of the archive.
namespace strata {
using namespace tar_internal;
namespace {

constexpr uint64_t kMaxExtensionSize = 16 << 20;  // PAX / GNU long name data
constexpr uint64_t kMaxSize = 1ULL << 53;         // bigger is not a real file
constexpr size_t kMaxSparseMapText = 1 << 20;
constexpr size_t kMaxSparseSegments = 1 << 20;
constexpr size_t kFileReadPiece = 256 << 10;  // WriteFile's reads

std::string Field(const uint8_t* block, size_t offset, size_t size) {
  const char* p = reinterpret_cast<const char*>(block + offset);
  return std::string(p, strnlen(p, size));
}

// Octal (NUL/space terminated) or GNU base-256 numeric header field.
bool ParseNumeric(const uint8_t* f, size_t size, int64_t& out) {
  if (f[0] & 0x80) {
    // Big-endian two's complement after the marker byte (0x80 or 0xff).
    bool negative = f[0] == 0xff;
    if (!negative && f[0] != 0x80) return false;
    uint8_t fill = negative ? 0xff : 0x00;
    for (size_t i = 1; i + 8 < size; i++)
      if (f[i] != fill) return false;
    uint64_t v = 0;
    for (size_t i = size - 8; i < size; i++) v = (v << 8) | f[i];
    if (!negative && (v >> 63)) return false;
    out = static_cast<int64_t>(v);
    return true;
  }
  size_t i = 0;
  while (i < size && (f[i] == ' ' || f[i] == 0)) i++;
  uint64_t v = 0;
  for (; i < size && f[i] != ' ' && f[i] != 0; i++) {
    if (f[i] < '0' || f[i] > '7') return false;
    if (v >> 60) return false;
    v = v * 8 + (f[i] - '0');
  }
  for (; i < size; i++)
    if (f[i] != ' ' && f[i] != 0) return false;
  out = static_cast<int64_t>(v);
  return true;
}

bool ParseDecimal(const std::string& s, int64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  int64_t v = 0;
  for (; i < s.size(); i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = s[0] == '-' ? -v : v;
  return true;
}

// PAX times: "seconds[.fraction]", possibly negative.
bool ParsePaxTime(const std::string& s, int64_t& sec, long& nsec) {
  size_t dot = s.find('.');
  if (!ParseDecimal(s.substr(0, dot), sec)) return false;
  nsec = 0;
  if (dot == std::string::npos) return true;
  std::string frac = s.substr(dot + 1);
  long scale = 100000000;
  for (char c : frac) {
    if (c < '0' || c > '9') return false;
    nsec += (c - '0') * scale;
    scale /= 10;
  }
  if (s[0] == '-' && nsec > 0) {  // -1.5 is 1.5 s before the epoch
    sec -= 1;
    nsec = 1000000000 - nsec;
  }
  return true;
}

bool DecodeBase64(const std::string& in, std::string& out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

bool DecodePercent(const std::string& in, std::string& out) {
  for (size_t i = 0; i < in.size(); i++) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    char hex[3] = {in[i + 1], in[i + 2], 0};
    char* end;
    long v = strtol(hex, &end, 16);
    if (*end) return false;
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return true;
}

}  // namespace

Failure TarApplier::Problem(const std::string& code, const std::string& entry,
                            const std::string& message) {
  problem_ = {code, entry.empty() ? message : "entry '" + entry + "': " + message, entry};
  state_ = State::Failed;
  return Fail(EINVAL, "tar", entry);
}

Failure TarApplier::SysProblem(Failure f, const std::string& entry) {
  std::string message = std::string(f.syscall) + " failed: " + strerror(f.err);
  problem_ = {"ERR_ARCHIVE_APPLY", entry.empty() ? message : "entry '" + entry + "': " + message, entry};
  state_ = State::Failed;
  return f;
}

Failure TarApplier::Open(const std::string& dir, WhiteoutMode mode, bool hash) {
  root_ = Fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_.valid()) return Fail(errno, "open", dir);
  char buf[PATH_MAX + 1];
  ssize_t n = readlink(ProcPath(root_.get()).c_str(), buf, PATH_MAX);
  if (n < 0) return Fail(errno, "readlink", ProcPath(root_.get()));
  root_path_.assign(buf, static_cast<size_t>(n));
  mode_ = mode;
  if (mode == WhiteoutMode::Index || hash) hash_ = std::make_unique<DigestChainBuilder>();
  return Ok();
}

Failure TarApplier::CheckWritable() {
  if (state_ == State::Failed)
    return Problem("ERR_ARCHIVE_STATE", "", "a previous write failed");
  if (finished_) return Problem("ERR_ARCHIVE_STATE", "", "the archive was already finished");
  return Ok();
}

Failure TarApplier::Write(const uint8_t* data, size_t size) {
  if (Failure f = CheckWritable()) return f;
  if (hash_) hash_->Update(data, size);
  while (size > 0) {
    size_t take = 0;
    switch (state_) {
      case State::Header:
      case State::SparseExt:
      case State::SparseMap: {
        take = std::min(size, 512 - block_fill_);
        memcpy(block_ + block_fill_, data, take);
        block_fill_ += take;
        Record(data, take);
        if (block_fill_ < 512) break;
        block_fill_ = 0;
        Failure f;
        if (state_ == State::Header) {
          f = OnHeader();
        } else if (state_ == State::SparseExt) {
          f = OnSparseExtBlock();
        } else {
          if (payload_remaining_ < 512) {
            state_ = State::Failed;
            return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "truncated sparse map");
          }
          payload_remaining_ -= 512;
          f = OnSparseMapBlock();
        }
        if (f) {
          state_ = State::Failed;
          return f;
        }
        break;
      }
      case State::ExtData: {
        take = static_cast<size_t>(std::min<uint64_t>(size, ext_remaining_));
        ext_data_.append(reinterpret_cast<const char*>(data), take);
        Record(data, take);
        ext_remaining_ -= take;
        if (ext_remaining_ == 0) {
          if (Failure f = OnExtData()) {
            state_ = State::Failed;
            return f;
          }
        }
        break;
      }
      case State::Payload: {
        take = static_cast<size_t>(std::min<uint64_t>(size, payload_remaining_));
        if (Failure f = WritePayload(data, take)) {
          state_ = State::Failed;
          return f;
        }
        payload_remaining_ -= take;
        if (payload_remaining_ == 0) {
          if (Failure f = FinishFile()) {
            state_ = State::Failed;
            return f;
          }
        }
        break;
      }
      case State::Skip:
      case State::Padding: {
        uint64_t& left = state_ == State::Skip ? payload_remaining_ : padding_remaining_;
        take = static_cast<size_t>(std::min<uint64_t>(size, left));
        Record(data, take);
        left -= take;
        if (left == 0) state_ = state_ == State::Skip && padding_remaining_ > 0
                                    ? State::Padding
                                    : State::Header;
        break;
      }
      case State::End:
        take = size;
        Record(data, take);
        break;
      case State::Failed:
        return Problem("ERR_ARCHIVE_STATE", "", "a previous write failed");
    }
    data += take;
    size -= take;
  }
  return Ok();
}

Failure TarApplier::WriteFile(const std::string& path, uint64_t size) {
  if (Failure f = CheckWritable()) return f;
  // Messages name the entry whose data this is, when it is one.
  std::string entry = state_ == State::Payload || state_ == State::Skip ? entry_.name : "";
  Fd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return SysProblem(Fail(errno, "open", path), entry);
  // Pieces stay in cache between the hash and the file's checksum. (Reading
  // ahead on another thread measured slower: the consumer then takes the
  // bytes from the other core's cache.)
  if (file_buffer_.empty()) file_buffer_.resize(kFileReadPiece);
  for (uint64_t done = 0;;) {
    // One byte more than is left, so that a file that grew shows at once.
    size_t want = static_cast<size_t>(std::min<uint64_t>(file_buffer_.size(), size - done + 1));
    ssize_t n = pread(fd.get(), file_buffer_.data(), want, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysProblem(Fail(errno, "read", path), entry);
    if (n == 0 ? done < size : static_cast<uint64_t>(n) > size - done)
      return Problem("ERR_ARCHIVE_SOURCE_CHANGED", entry,
                     (entry.empty() ? path : "the file") + " changed size while it was being archived");
    if (n == 0) return Ok();
    if (Failure f = Write(file_buffer_.data(), static_cast<size_t>(n))) return f;
    done += static_cast<uint64_t>(n);
  }
}

Failure TarApplier::OnHeader() {
  bool zero = true;
  for (size_t i = 0; i < 512 && zero; i++) zero = block_[i] == 0;
  if (zero) {
    if (pending_extension_)
      return Problem("ERR_ARCHIVE_CORRUPT", "",
                     "end-of-archive block right after an extension header");
    if (++zero_blocks_ == 2) state_ = State::End;
    return Ok();
  }
  std::string name = Field(block_, 0, 100);
  if (zero_blocks_ > 0)
    return Problem("ERR_ARCHIVE_CORRUPT", name,
                   "header after an end-of-archive block");

  int64_t recorded;
  if (!ParseNumeric(block_ + 148, 8, recorded))
    return Problem("ERR_ARCHIVE_CORRUPT", name, "unreadable header checksum");
  int64_t unsigned_sum = 0, signed_sum = 0;
  for (size_t i = 0; i < 512; i++) {
    uint8_t b = (i >= 148 && i < 156) ? ' ' : block_[i];
    unsigned_sum += b;
    signed_sum += static_cast<int8_t>(b);
  }
  if (recorded != unsigned_sum && recorded != signed_sum)
    return Problem("ERR_ARCHIVE_CORRUPT", name, "header checksum mismatch");

  int64_t size;
  if (!ParseNumeric(block_ + 124, 12, size))
    return Problem("ERR_ARCHIVE_CORRUPT", name, "unreadable size field");
  if (size < 0 || static_cast<uint64_t>(size) > kMaxSize)
    return Problem("ERR_ARCHIVE_CORRUPT", name, "absurd size " + std::to_string(size));

  char type = static_cast<char>(block_[156]);
  if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
    if (static_cast<uint64_t>(size) > kMaxExtensionSize)
      return Problem("ERR_ARCHIVE_CORRUPT", name,
                     "extension header of " + std::to_string(size) + " bytes is too large");
    ext_type_ = type;
    ext_data_.clear();
    ext_data_.reserve(static_cast<size_t>(size));
    ext_remaining_ = static_cast<uint64_t>(size) + PaddingFor(static_cast<uint64_t>(size));
    ext_size_ = static_cast<uint64_t>(size);  // to strip the padding afterwards
    state_ = State::ExtData;
    if (ext_remaining_ == 0) return OnExtData();
    return Ok();
  }
  memcpy(header_, block_, 512);
  return StartEntry();
}

Failure TarApplier::ParsePax(const std::string& data,
                             std::map<std::string, std::string>& into,
                             std::vector<std::pair<std::string, std::string>>* ordered) {
  size_t pos = 0;
  while (pos < data.size()) {
    size_t space = data.find(' ', pos);
    int64_t len;
    if (space == std::string::npos || !ParseDecimal(data.substr(pos, space - pos), len) ||
        len < 5 || static_cast<uint64_t>(len) > data.size() - pos ||
        data[pos + static_cast<size_t>(len) - 1] != '\n')
      return Problem("ERR_ARCHIVE_CORRUPT", "", "malformed PAX record at offset " + std::to_string(pos));
    std::string record = data.substr(space + 1, pos + static_cast<size_t>(len) - 1 - (space + 1));
    size_t eq = record.find('=');
    if (eq == std::string::npos || eq == 0)
      return Problem("ERR_ARCHIVE_CORRUPT", "", "PAX record without a key");
    std::string key = record.substr(0, eq), value = record.substr(eq + 1);
    if (ordered) ordered->emplace_back(key, value);
    into[key] = value;
    pos += static_cast<size_t>(len);
  }
  return Ok();
}

Failure TarApplier::OnExtData() {
  ext_data_.resize(static_cast<size_t>(ext_size_));
  char type = ext_type_;
  state_ = State::Header;
  if (type == 'L' || type == 'K') {
    while (!ext_data_.empty() && ext_data_.back() == '\0') ext_data_.pop_back();
    (type == 'L' ? long_name_ : long_link_) = ext_data_;
    (type == 'L' ? has_long_name_ : has_long_link_) = true;
  } else if (type == 'x') {
    if (Failure f = ParsePax(ext_data_, pax_, &pax_ordered_)) return f;
  } else {
    std::map<std::string, std::string> global;
    if (Failure f = ParsePax(ext_data_, global, nullptr)) return f;
    for (auto& [key, value] : global) {
      if (value.empty()) global_pax_.erase(key);
      else global_pax_[key] = value;
    }
    // Global headers accumulate: bound what a hostile stream can make us keep.
    size_t kept = 0;
    for (const auto& [key, value] : global_pax_) kept += key.size() + value.size();
    if (kept > kMaxExtensionSize)
      return Problem("ERR_ARCHIVE_CORRUPT", "", "global PAX headers are too large");
    return Ok();
  }
  pending_extension_ = true;
  ext_data_.clear();
  return Ok();
}

Failure TarApplier::NormalizePath(const std::string& raw, const std::string& entry,
                                  std::string& out) {
  if (raw.find('\0') != std::string::npos)
    return Problem("ERR_ARCHIVE_BAD_PATH", entry, "path contains a NUL byte");
  if (raw.size() >= PATH_MAX)
    return Problem("ERR_ARCHIVE_BAD_PATH", entry, "path is longer than PATH_MAX");
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t slash = raw.find('/', pos);
    if (slash == std::string::npos) slash = raw.size();
    std::string part = raw.substr(pos, slash - pos);
    pos = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part.size() > NAME_MAX)
      return Problem("ERR_ARCHIVE_BAD_PATH", entry, "a path component is longer than NAME_MAX");
    if (part == "..") {
      if (parts.empty())
        return Problem("ERR_ARCHIVE_UNSAFE_PATH", entry, "path escapes the layer directory");
      parts.pop_back();
      continue;
    }
    parts.push_back(std::move(part));
  }
  out.clear();
  for (const std::string& part : parts) out = Join(out, part);
  return Ok();
}

Failure TarApplier::StartEntry() {
  Entry e;
  const uint8_t* h = header_;
  bool posix = memcmp(h + 257, "ustar\0", 6) == 0;
  e.type = static_cast<char>(h[156]);

  auto pax = [&](const char* key) -> const std::string* {
    auto it = pax_.find(key);
    if (it != pax_.end()) return it->second.empty() ? nullptr : &it->second;
    it = global_pax_.find(key);
    return it == global_pax_.end() ? nullptr : &it->second;
  };

  std::string raw_name;
  if (has_long_name_) raw_name = long_name_;
  else if (const std::string* p = pax("path")) raw_name = *p;
  else {
    raw_name = Field(h, 0, 100);
    std::string prefix = posix ? Field(h, 345, 155) : "";
    if (!prefix.empty()) raw_name = prefix + "/" + raw_name;
  }
  if (const std::string* p = pax("GNU.sparse.name")) raw_name = *p;
  e.name = raw_name;

  if (has_long_link_) e.link = long_link_;
  else if (const std::string* p = pax("linkpath")) e.link = *p;
  else e.link = Field(h, 157, 100);
  if (e.link.find('\0') != std::string::npos || e.link.size() >= PATH_MAX)
    return Problem("ERR_ARCHIVE_BAD_PATH", e.name, "link target is not a valid path");

  if (Failure f = NormalizePath(raw_name, e.name, e.path)) return f;
  if (e.type == '1') {
    std::string target;
    if (Failure f = NormalizePath(e.link, e.name, target)) return f;
    e.link = target;
  }

  int64_t v;
  auto numeric = [&](size_t off, size_t len, const char* what, const char* pax_key,
                     int64_t max, int64_t& out) -> Failure {
    if (const std::string* p = pax_key ? pax(pax_key) : nullptr) {
      if (!ParseDecimal(*p, out))
        return Problem("ERR_ARCHIVE_CORRUPT", e.name, std::string("bad PAX ") + pax_key);
    } else if (!ParseNumeric(h + off, len, out)) {
      return Problem("ERR_ARCHIVE_CORRUPT", e.name, std::string("unreadable ") + what + " field");
    }
    if (out < 0 || out > max)
      return Problem("ERR_ARCHIVE_CORRUPT", e.name, std::string("absurd ") + what);
    return Ok();
  };
  if (Failure f = numeric(100, 8, "mode", nullptr, INT32_MAX, v)) return f;
  e.mode = static_cast<uint32_t>(v) & 07777;
  if (Failure f = numeric(108, 8, "uid", "uid", UINT32_MAX - 1, e.uid)) return f;
  if (Failure f = numeric(116, 8, "gid", "gid", UINT32_MAX - 1, e.gid)) return f;
  if (Failure f = numeric(124, 12, "size", "size", static_cast<int64_t>(kMaxSize), v)) return f;
  e.size = static_cast<uint64_t>(v);
  e.real_size = e.size;
  if (Failure f = numeric(329, 8, "devmajor", nullptr, UINT32_MAX, v)) return f;
  e.devmajor = static_cast<uint32_t>(v);
  if (Failure f = numeric(337, 8, "devminor", nullptr, UINT32_MAX, v)) return f;
  e.devminor = static_cast<uint32_t>(v);

  if (const std::string* p = pax("mtime")) {
    if (!ParsePaxTime(*p, e.mtime_sec, e.mtime_nsec))
      return Problem("ERR_ARCHIVE_CORRUPT", e.name, "bad PAX mtime");
  } else if (!ParseNumeric(h + 136, 12, e.mtime_sec)) {
    return Problem("ERR_ARCHIVE_CORRUPT", e.name, "unreadable mtime field");
  }
  if (const std::string* p = pax("atime")) {
    if (!ParsePaxTime(*p, e.atime_sec, e.atime_nsec))
      return Problem("ERR_ARCHIVE_CORRUPT", e.name, "bad PAX atime");
    e.has_atime = true;
  }
  // As Docker does: never set an access time older than the modification time.
  if (!e.has_atime || e.atime_sec < e.mtime_sec ||
      (e.atime_sec == e.mtime_sec && e.atime_nsec < e.mtime_nsec)) {
    e.atime_sec = e.mtime_sec;
    e.atime_nsec = e.mtime_nsec;
  }

  for (const auto& [key, value] : pax_) {
    static const std::string kSchily = "SCHILY.xattr.", kLibarchive = "LIBARCHIVE.xattr.";
    if (key.compare(0, kSchily.size(), kSchily) == 0) {
      e.xattrs.emplace_back(key.substr(kSchily.size()), value);
    } else if (key.compare(0, kLibarchive.size(), kLibarchive) == 0) {
      std::string name, data;
      if (!DecodePercent(key.substr(kLibarchive.size()), name) || !DecodeBase64(value, data))
        return Problem("ERR_ARCHIVE_CORRUPT", e.name, "bad LIBARCHIVE.xattr record");
      e.xattrs.emplace_back(name, data);
    }
  }
  for (const auto& xattr : e.xattrs)
    if (xattr.first.empty() || xattr.first.find('\0') != std::string::npos ||
        xattr.first.size() > XATTR_NAME_MAX)
      return Problem("ERR_ARCHIVE_CORRUPT", e.name, "bad xattr name");

  // Sparse files, in the three PAX encodings GNU tar writes.
  auto parse_u64 = [&](const std::string& s, uint64_t& out) {
    int64_t n;
    if (!ParseDecimal(s, n) || n < 0 || static_cast<uint64_t>(n) > kMaxSize) return false;
    out = static_cast<uint64_t>(n);
    return true;
  };
  const std::string* major = pax("GNU.sparse.major");
  const std::string* realsize = pax("GNU.sparse.realsize");
  if (!realsize) realsize = pax("GNU.sparse.size");
  if (major && *major == "1") {
    e.sparse = true;
    e.sparse_map_in_data = true;
  } else if (const std::string* map = pax("GNU.sparse.map")) {
    e.sparse = true;
    std::vector<uint64_t> numbers;
    size_t pos = 0;
    while (pos <= map->size()) {
      size_t comma = map->find(',', pos);
      if (comma == std::string::npos) comma = map->size();
      uint64_t n;
      if (!parse_u64(map->substr(pos, comma - pos), n))
        return Problem("ERR_ARCHIVE_CORRUPT", e.name, "bad GNU.sparse.map");
      numbers.push_back(n);
      pos = comma + 1;
    }
    if (numbers.size() % 2) return Problem("ERR_ARCHIVE_CORRUPT", e.name, "odd GNU.sparse.map");
    for (size_t i = 0; i < numbers.size(); i += 2)
      e.segments.push_back(SparseSegment{numbers[i], numbers[i + 1]});
  } else if (pax("GNU.sparse.numblocks")) {
    e.sparse = true;
    SparseSegment seg;
    for (const auto& [key, value] : pax_ordered_) {
      if (key == "GNU.sparse.offset") {
        if (!parse_u64(value, seg.offset))
          return Problem("ERR_ARCHIVE_CORRUPT", e.name, "bad GNU.sparse.offset");
      } else if (key == "GNU.sparse.numbytes") {
        if (!parse_u64(value, seg.length))
          return Problem("ERR_ARCHIVE_CORRUPT", e.name, "bad GNU.sparse.numbytes");
        e.segments.push_back(seg);
      }
    }
  }
  if (e.sparse) {
    if (!realsize || !parse_u64(*realsize, e.real_size))
      return Problem("ERR_ARCHIVE_CORRUPT", e.name, "sparse file without a valid real size");
    if (e.segments.size() > kMaxSparseSegments)
      return Problem("ERR_ARCHIVE_CORRUPT", e.name, "too many sparse segments");
  }

  bool old_sparse = e.type == 'S';
  if (old_sparse) {
    e.type = '0';
    e.sparse = true;
    if (!ParseNumeric(h + 483, 12, v) || v < 0 || static_cast<uint64_t>(v) > kMaxSize)
      return Problem("ERR_ARCHIVE_CORRUPT", e.name, "unreadable sparse real size");
    e.real_size = static_cast<uint64_t>(v);
    for (int i = 0; i < 4; i++) {
      int64_t off, len;
      if (h[386 + i * 24] == 0) break;
      if (!ParseNumeric(h + 386 + i * 24, 12, off) || !ParseNumeric(h + 398 + i * 24, 12, len) ||
          off < 0 || len < 0)
        return Problem("ERR_ARCHIVE_CORRUPT", e.name, "unreadable sparse map");
      e.segments.push_back(SparseSegment{static_cast<uint64_t>(off), static_cast<uint64_t>(len)});
    }
  }

  // Extensions are consumed by this entry.
  has_long_name_ = has_long_link_ = false;
  long_name_.clear();
  long_link_.clear();
  pax_.clear();
  pax_ordered_.clear();
  pending_extension_ = false;
  entry_ = std::move(e);

  if (old_sparse && header_[482]) {
    state_ = State::SparseExt;
    return Ok();
  }
  return CreateEntry();
}

Failure TarApplier::OnSparseExtBlock() {
  for (int i = 0; i < 21; i++) {
    int64_t off, len;
    if (block_[i * 24] == 0) break;
    if (!ParseNumeric(block_ + i * 24, 12, off) || !ParseNumeric(block_ + 12 + i * 24, 12, len) ||
        off < 0 || len < 0)
      return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "unreadable sparse map");
    entry_.segments.push_back(SparseSegment{static_cast<uint64_t>(off), static_cast<uint64_t>(len)});
  }
  if (entry_.segments.size() > kMaxSparseSegments)
    return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "too many sparse segments");
  if (block_[504]) return Ok();  // more extension blocks follow
  state_ = State::Header;
  return CreateEntry();
}

// PAX sparse 1.0: the data starts with "count\n" and count "offset\nlength\n"
// pairs, padded to a block boundary.
Failure TarApplier::OnSparseMapBlock() {
  sparse_map_text_.append(reinterpret_cast<const char*>(block_), 512);
  if (sparse_map_text_.size() > kMaxSparseMapText)
    return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "sparse map is too large");
  std::vector<uint64_t> numbers;
  size_t pos = 0;
  uint64_t wanted = 1;
  while (numbers.size() < wanted) {
    size_t nl = sparse_map_text_.find('\n', pos);
    if (nl == std::string::npos) {
      if (payload_remaining_ == 0)
        return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "truncated sparse map");
      return Ok();  // needs the next block
    }
    int64_t n;
    if (!ParseDecimal(sparse_map_text_.substr(pos, nl - pos), n) || n < 0 ||
        static_cast<uint64_t>(n) > kMaxSize)
      return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "bad sparse map");
    numbers.push_back(static_cast<uint64_t>(n));
    if (numbers.size() == 1) {
      if (numbers[0] > kMaxSparseMapText)
        return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "bad sparse map");
      wanted = 1 + 2 * numbers[0];
    }
    pos = nl + 1;
  }
  for (size_t i = 1; i < numbers.size(); i += 2)
    entry_.segments.push_back(SparseSegment{numbers[i], numbers[i + 1]});
  sparse_map_text_.clear();
  entry_.size = payload_remaining_;
  state_ = State::Payload;
  if (Failure f = CheckSegments()) return f;
  if (payload_remaining_ == 0) return FinishFile();
  return Ok();
}

Failure TarApplier::CheckSegments() {
  uint64_t stored = 0;
  for (const SparseSegment& seg : entry_.segments) {
    if (seg.offset + seg.length > entry_.real_size || seg.offset + seg.length < seg.offset)
      return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "sparse segment outside the file");
    stored += seg.length;
  }
  if (stored != entry_.size)
    return Problem("ERR_ARCHIVE_CORRUPT", entry_.name, "sparse map does not match the data size");
  return Ok();
}

Failure TarApplier::Finish(TarStats& stats, std::string& split) {
  if (finished_) return Problem("ERR_ARCHIVE_STATE", "", "the archive was already finished");
  switch (state_) {
    case State::End:
      break;
    case State::Header:
      if (block_fill_ == 0 && zero_blocks_ > 0) break;
      if (block_fill_ > 0)  // names the entry when its name field arrived
        return Problem("ERR_ARCHIVE_TRUNCATED", block_fill_ >= 100 ? Field(block_, 0, 100) : "",
                       "the stream ends inside a header");
      if (pending_extension_)
        return Problem("ERR_ARCHIVE_TRUNCATED", "", "the stream ends after an extension header");
      return Problem("ERR_ARCHIVE_TRUNCATED", "",
                     "the stream ends without an end-of-archive block");
    case State::Failed:
      return Problem("ERR_ARCHIVE_STATE", "", "a previous write failed");
    default:
      return Problem("ERR_ARCHIVE_TRUNCATED", entry_.name, "the stream ends inside this entry");
  }
  for (const auto& [path, t] : dir_times_) {
    Fd dir(path.empty() ? dup(root_.get())
                        : OpenInRoot(root_.get(), path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
    if (!dir.valid()) continue;  // replaced by a later entry
    struct timespec ts[2] = {{static_cast<time_t>(t.atime_sec), t.atime_nsec},
                             {static_cast<time_t>(t.mtime_sec), t.mtime_nsec}};
    if (futimens(dir.get(), ts) != 0) return SysProblem(Fail(errno, "futimens", path), path);
  }
  if (syncfs(root_.get()) != 0) return SysProblem(Fail(errno, "syncfs", ""), "");
  finished_ = true;
  stats = stats_;
  if (hash_) hash_->Finish(stats.diff_id, stats.checkpoints);
  split = split_.Take();
  return Ok();
}

}  // namespace strata
