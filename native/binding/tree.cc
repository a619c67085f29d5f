#include <memory>

#include "../core/tree.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

constexpr uint32_t kMaxThreads = 64;

// copyTree(src, dst, threads, reflink): threads 0 picks min(4, hardware
// threads); reflink false copies every byte with read/write.
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

}  // namespace

void InitTree(Napi::Env env, Napi::Object exports) {
  exports.Set("copyTree", Napi::Function::New(env, CopyTreeJs, "copyTree"));
}

}  // namespace strata
