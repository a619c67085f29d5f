#include <memory>

#include "../core/btrfs.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

using Handler = Napi::Value (*)(const Napi::CallbackInfo&);

// Qgroup ids (level << 48 | id) and byte counts travel as JS numbers.
constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53) - 1;

uint64_t SafeIntegerArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<uint64_t>(IntegerArg(info, i, name, 0, kMaxSafeInteger));
}

Napi::Value CreateSubvolumeJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  return RunAsync(info.Env(), "strata.btrfsCreateSubvolume",
                  [=] { return BtrfsCreateSubvolume(path); });
}

Napi::Value SnapshotJs(const Napi::CallbackInfo& info) {
  std::string source = PathArg(info, 0, "source");
  std::string dest = PathArg(info, 1, "dest");
  bool read_only = BoolArg(info, 2, "readOnly");
  return RunAsync(info.Env(), "strata.btrfsSnapshot",
                  [=] { return BtrfsSnapshot(source, dest, read_only); });
}

Napi::Value DestroySubvolumeJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  return RunAsync(info.Env(), "strata.btrfsDestroySubvolume",
                  [=] { return BtrfsDestroySubvolume(path); });
}

Napi::Value IsSubvolumeJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  auto result = std::make_shared<bool>(false);
  return RunAsync(
      info.Env(), "strata.btrfsIsSubvolume",
      [=] { return BtrfsIsSubvolume(path, *result); },
      [=](Napi::Env env) { return Napi::Boolean::New(env, *result); });
}

Napi::Value SubvolumeIdJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  auto id = std::make_shared<uint64_t>(0);
  return RunAsync(
      info.Env(), "strata.btrfsSubvolumeId", [=] { return BtrfsSubvolumeId(path, *id); },
      [=](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(*id)); });
}

Napi::Value GetReadOnlyJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  auto result = std::make_shared<bool>(false);
  return RunAsync(
      info.Env(), "strata.btrfsGetReadOnly",
      [=] { return BtrfsGetReadOnly(path, *result); },
      [=](Napi::Env env) { return Napi::Boolean::New(env, *result); });
}

Napi::Value SetReadOnlyJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  bool read_only = BoolArg(info, 1, "readOnly");
  return RunAsync(info.Env(), "strata.btrfsSetReadOnly",
                  [=] { return BtrfsSetReadOnly(path, read_only); });
}

Napi::Value SyncJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  return RunAsync(info.Env(), "strata.btrfsSync", [=] { return BtrfsSync(path); });
}

Napi::Value QuotaEnableJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  bool enable = BoolArg(info, 1, "enable");
  return RunAsync(info.Env(), "strata.btrfsQuotaEnable",
                  [=] { return BtrfsQuotaEnable(path, enable); });
}

Napi::Value QgroupCreateJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  uint64_t qgroup_id = SafeIntegerArg(info, 1, "qgroupId");
  return RunAsync(info.Env(), "strata.btrfsQgroupCreate",
                  [=] { return BtrfsQgroupCreate(path, qgroup_id); });
}

Napi::Value QgroupLimitJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  uint64_t qgroup_id = SafeIntegerArg(info, 1, "qgroupId");
  uint64_t max_referenced = SafeIntegerArg(info, 2, "maxReferenced");
  uint64_t max_exclusive = SafeIntegerArg(info, 3, "maxExclusive");
  return RunAsync(info.Env(), "strata.btrfsQgroupLimit", [=] {
    return BtrfsQgroupLimit(path, qgroup_id, max_referenced, max_exclusive);
  });
}

Napi::Value QuotaRescanJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  bool wait = BoolArg(info, 1, "wait");
  return RunAsync(info.Env(), "strata.btrfsQuotaRescan",
                  [=] { return BtrfsQuotaRescan(path, wait); });
}

Napi::Value QgroupUsageJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  uint64_t qgroup_id = SafeIntegerArg(info, 1, "qgroupId");
  auto usage = std::make_shared<BtrfsUsage>();
  return RunAsync(
      info.Env(), "strata.btrfsQgroupUsage",
      [=] { return BtrfsGetQgroupUsage(path, qgroup_id, *usage); },
      [=](Napi::Env env) {
        Napi::Object out = Napi::Object::New(env);
        auto number = [&](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
        out.Set("qgroupId", number(usage->qgroup_id));
        out.Set("referenced", number(usage->referenced));
        out.Set("exclusive", number(usage->exclusive));
        out.Set("maxReferenced", number(usage->max_referenced));
        out.Set("maxExclusive", number(usage->max_exclusive));
        return out;
      });
}

}  // namespace

void InitBtrfs(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Handler> functions[] = {
      {"btrfsCreateSubvolume", CreateSubvolumeJs},
      {"btrfsSnapshot", SnapshotJs},
      {"btrfsDestroySubvolume", DestroySubvolumeJs},
      {"btrfsIsSubvolume", IsSubvolumeJs},
      {"btrfsSubvolumeId", SubvolumeIdJs},
      {"btrfsGetReadOnly", GetReadOnlyJs},
      {"btrfsSetReadOnly", SetReadOnlyJs},
      {"btrfsSync", SyncJs},
      {"btrfsQuotaEnable", QuotaEnableJs},
      {"btrfsQgroupCreate", QgroupCreateJs},
      {"btrfsQgroupLimit", QgroupLimitJs},
      {"btrfsQuotaRescan", QuotaRescanJs},
      {"btrfsQgroupUsage", QgroupUsageJs},
  };
  for (const auto& [name, callback] : functions)
    exports.Set(name, Napi::Function::New(env, callback, name));
}

}  // namespace strata
