#include "../core/clone.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

// Offsets and lengths must be exact in a double.
constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53) - 1;

// cloneFile(src, dst, mode): mode is 'auto', 'reflink' or 'copy'; resolves
// to { method, bytes }.
Napi::Value CloneFileJs(const Napi::CallbackInfo& info) {
  std::string src = PathArg(info, 0, "src");
  std::string dst = PathArg(info, 1, "dst");
  std::string mode_name = StringArg(info, 2, "mode", false);
  CloneMode mode;
  if (mode_name == "auto") mode = CloneMode::kAuto;
  else if (mode_name == "reflink") mode = CloneMode::kReflink;
  else if (mode_name == "copy") mode = CloneMode::kCopy;
  else
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_VALUE",
                  "The \"mode\" argument must be 'auto', 'reflink' or 'copy'");
  struct Result {
    CloneMethod method = CloneMethod::kCopy;
    uint64_t bytes = 0;
  };
  auto result = std::make_shared<Result>();
  return RunAsync(
      info.Env(), "strata.cloneFile",
      [=] { return CloneFile(src, dst, mode, result->method, result->bytes); },
      [=](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("method", Napi::String::New(env, CloneMethodName(result->method)));
        o.Set("bytes", Napi::Number::New(env, static_cast<double>(result->bytes)));
        return o;
      });
}

// cloneRange(src, srcOffset, dst, dstOffset, length): src is a path or an
// open fd (which the caller keeps open until the promise settles).
Napi::Value CloneRangeJs(const Napi::CallbackInfo& info) {
  bool src_is_fd = info.Length() > 0 && info[0].IsNumber();
  int src_fd = src_is_fd ? FdArg(info, 0, "src") : -1;
  std::string src = src_is_fd ? "fd " + std::to_string(src_fd) : PathArg(info, 0, "src");
  uint64_t src_offset = static_cast<uint64_t>(IntegerArg(info, 1, "srcOffset", 0, kMaxSafeInteger));
  std::string dst = PathArg(info, 2, "dst");
  uint64_t dst_offset = static_cast<uint64_t>(IntegerArg(info, 3, "dstOffset", 0, kMaxSafeInteger));
  uint64_t length = static_cast<uint64_t>(IntegerArg(info, 4, "length", 0, kMaxSafeInteger));
  return RunAsync(info.Env(), "strata.cloneRange", [=] {
    if (src_is_fd) return CloneRange(src_fd, src, src_offset, dst, dst_offset, length);
    return CloneRange(src, src_offset, dst, dst_offset, length);
  });
}

Napi::Value ProbeReflinkJs(const Napi::CallbackInfo& info) {
  std::string dir = PathArg(info, 0, "dir");
  auto supported = std::make_shared<bool>(false);
  return RunAsync(
      info.Env(), "strata.probeReflink", [=] { return ProbeReflink(dir, *supported); },
      [=](Napi::Env env) { return Napi::Boolean::New(env, *supported); });
}

}  // namespace

void InitClone(Napi::Env env, Napi::Object exports) {
  exports.Set("cloneFile", Napi::Function::New(env, CloneFileJs, "cloneFile"));
  exports.Set("cloneRange", Napi::Function::New(env, CloneRangeJs, "cloneRange"));
  exports.Set("probeReflink", Napi::Function::New(env, ProbeReflinkJs, "probeReflink"));
}

}  // namespace strata
