#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "../core/scan.h"

#include "../core/tree.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

constexpr uint32_t kMaxThreads = 64;

// copyTree(src, dst, threads, reflink): threads 0 picks min(4, hardware
// threads), or 1 for reflinks into btrfs; reflink false copies every byte
// with read/write.
Napi::Value CopyTreeJs(const Napi::CallbackInfo& info) {
  std::string src = PathArg(info, 0, "src");
  std::string dst = PathArg(info, 1, "dst");
  uint32_t threads = Uint32Arg(info, 2, "threads", kMaxThreads);
  bool reflink = BoolArg(info, 3, "reflink");
  auto stats = std::make_shared<TreeCopyStats>();
  return RunAsync(
      info.Env(), "strata.copyTree", [=] { return CopyTree(src, dst, threads, reflink, *stats); },
      [=](Napi::Env env) {
        Napi::Object out = Napi::Object::New(env);
        const std::pair<const char*, uint64_t> fields[] = {
            {"files", stats->files},         {"dirs", stats->dirs},
            {"symlinks", stats->symlinks},   {"hardlinks", stats->hardlinks},
            {"specials", stats->specials},   {"bytes", stats->bytes},
            {"reflinked", stats->reflinked}, {"copyRanged", stats->copy_ranged},
            {"copied", stats->copied},
        };
        for (const auto& [name, value] : fields)
          out.Set(name, Napi::Number::New(env, static_cast<double>(value)));
        return out;
      });
}

// Fields per entry in scanTree's `fields`.
constexpr size_t kScanFields = 7;

double Millis(const struct timespec& t) { return static_cast<double>(t.tv_sec) * 1e3 + t.tv_nsec / 1e6; }

// "dev:ino:size:mode:mtimeNs:ctimeNs": the same text as from Node's bigint lstat.
std::string Stamp(const struct stat& st) {
  auto ns = [](const struct timespec& t) { return std::to_string(static_cast<long long>(t.tv_sec) * 1000000000LL + t.tv_nsec); };

  return std::to_string(static_cast<unsigned long long>(st.st_dev)) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mode) + ":" + ns(st.st_mtim) + ":" + ns(st.st_ctim);
}

// scanTree(root): resolves { paths, stamps, fields } for every entry below
// root (parents first, names in byte order): paths and stamps NUL-separated,
// fields a Float64Array of [kind (0 other, 1 file, 2 directory, 3 symlink),
// permission bits, uid, gid, size, mtime ms, last change (mtime or ctime) ms]
// per entry.
Napi::Value ScanTreeJs(const Napi::CallbackInfo& info) {
  std::string root = PathArg(info, 0, "root");
  auto entries = std::make_shared<std::vector<ScanEntry>>();
  return RunAsync(
      info.Env(), "strata.scanTree", [=] { return ScanTree(root, *entries); },
      [=](Napi::Env env) {
        std::string paths, stamps;
        auto fields = Napi::Float64Array::New(env, entries->size() * kScanFields);
        double* out = fields.Data();
        for (const ScanEntry& e : *entries) {
          paths += e.path;
          paths += '\0';
          stamps += Stamp(e.st);
          stamps += '\0';
          const struct stat& st = e.st;
          int kind = S_ISREG(st.st_mode) ? 1 : S_ISDIR(st.st_mode) ? 2 : S_ISLNK(st.st_mode) ? 3 : 0;
          double changed = std::max(Millis(st.st_mtim), Millis(st.st_ctim));
          const double values[kScanFields] = {static_cast<double>(kind), static_cast<double>(st.st_mode & 07777),
                                              static_cast<double>(st.st_uid), static_cast<double>(st.st_gid),
                                              static_cast<double>(st.st_size), Millis(st.st_mtim), changed};
          std::copy(values, values + kScanFields, out);
          out += kScanFields;
        }
        Napi::Object result = Napi::Object::New(env);
        result.Set("paths", Napi::String::New(env, paths));
        result.Set("stamps", Napi::String::New(env, stamps));
        result.Set("fields", fields);
        return result;
      });
}

}  // namespace

void InitTree(Napi::Env env, Napi::Object exports) {
  exports.Set("copyTree", Napi::Function::New(env, CopyTreeJs, "copyTree"));
  exports.Set("scanTree", Napi::Function::New(env, ScanTreeJs, "scanTree"));
}

}  // namespace strata
