#include <napi.h>

#include "areas.h"

namespace {

// Bumped whenever the exported surface changes, so a stale build/ that
// shadows a newer prebuild is caught by the loader instead of misbehaving.
constexpr uint32_t kAbiVersion = 11;

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, kAbiVersion));
  strata::InitMount(env, exports);
  strata::InitMountApi(env, exports);
  strata::InitOverlay(env, exports);
  strata::InitFs(env, exports);
  strata::InitClone(env, exports);
  strata::InitLoop(env, exports);
  strata::InitArchive(env, exports);
  strata::InitDigest(env, exports);
  strata::InitTree(env, exports);
  strata::InitBtrfs(env, exports);
  strata::InitDm(env, exports);
  strata::InitResolve(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(strata_native, Init)
