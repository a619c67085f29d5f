#include "../core/loop.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53) - 1;

bool OptionalBool(Napi::Object options, const char* key) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return false;
  if (!v.IsBoolean())
    ThrowArgError(options.Env(), "ERR_INVALID_ARG_TYPE",
                  std::string("The \"options.") + key + "\" property must be of type boolean");
  return v.As<Napi::Boolean>().Value();
}

uint64_t OptionalInteger(Napi::Object options, const char* key, int64_t max) {
  Napi::Value v = options.Get(key);
  if (v.IsUndefined()) return 0;
  std::string name = std::string("options.") + key;
  if (!v.IsNumber())
    ThrowArgError(options.Env(), "ERR_INVALID_ARG_TYPE",
                  "The \"" + name + "\" property must be of type number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < 0 || d > static_cast<double>(max))
    ThrowArgError(options.Env(), "ERR_OUT_OF_RANGE",
                  "The \"" + name + "\" property must be an integer >= 0 and <= " +
                      std::to_string(max));
  return static_cast<uint64_t>(d);
}

Napi::Object StatusObject(Napi::Env env, const LoopStatus& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("device", Napi::String::New(env, s.device));
  o.Set("number", Napi::Number::New(env, s.number));
  o.Set("backingFile", Napi::String::New(env, s.backing_file));
  o.Set("offset", Napi::Number::New(env, static_cast<double>(s.offset)));
  o.Set("sizeLimit", Napi::Number::New(env, static_cast<double>(s.size_limit)));
  o.Set("readOnly", Napi::Boolean::New(env, s.read_only));
  o.Set("autoclear", Napi::Boolean::New(env, s.autoclear));
  o.Set("partscan", Napi::Boolean::New(env, s.partscan));
  o.Set("directIo", Napi::Boolean::New(env, s.direct_io));
  return o;
}

// loopAttach(file, { readOnly, autoclear, directIo, offset, sizeLimit,
// blockSize }) resolves to { device, number, fd }; the caller owns fd.
Napi::Value LoopAttachJs(const Napi::CallbackInfo& info) {
  std::string file = PathArg(info, 0, "file");
  Napi::Object o = ObjectArg(info, 1, "options");
  LoopOptions options;
  options.read_only = OptionalBool(o, "readOnly");
  options.autoclear = OptionalBool(o, "autoclear");
  options.direct_io = OptionalBool(o, "directIo");
  options.offset = OptionalInteger(o, "offset", kMaxSafeInteger);
  options.size_limit = OptionalInteger(o, "sizeLimit", kMaxSafeInteger);
  options.block_size = static_cast<uint32_t>(OptionalInteger(o, "blockSize", 65536));
  struct Result {
    std::string device;
    uint32_t number = 0;
    Fd fd;
  };
  auto result = std::make_shared<Result>();
  return RunAsync(
      info.Env(), "strata.loopAttach",
      [=] { return LoopAttach(file, options, result->device, result->number, result->fd); },
      [=](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("device", Napi::String::New(env, result->device));
        o.Set("number", Napi::Number::New(env, result->number));
        o.Set("fd", Napi::Number::New(env, result->fd.release()));
        return o;
      });
}

Napi::Value LoopDetachJs(const Napi::CallbackInfo& info) {
  std::string device = PathArg(info, 0, "device");
  return RunAsync(info.Env(), "strata.loopDetach", [=] { return LoopDetach(device); });
}

Napi::Value LoopStatusJs(const Napi::CallbackInfo& info) {
  std::string device = PathArg(info, 0, "device");
  auto status = std::make_shared<LoopStatus>();
  return RunAsync(
      info.Env(), "strata.loopStatus", [=] { return LoopGetStatus(device, *status); },
      [=](Napi::Env env) { return StatusObject(env, *status); });
}

Napi::Value LoopListJs(const Napi::CallbackInfo& info) {
  auto list = std::make_shared<std::vector<LoopStatus>>();
  return RunAsync(
      info.Env(), "strata.loopList", [=] { return LoopList(*list); },
      [=](Napi::Env env) {
        Napi::Array array = Napi::Array::New(env, list->size());
        for (uint32_t i = 0; i < list->size(); i++) array.Set(i, StatusObject(env, (*list)[i]));
        return array;
      });
}

}  // namespace

void InitLoop(Napi::Env env, Napi::Object exports) {
  exports.Set("loopAttach", Napi::Function::New(env, LoopAttachJs, "loopAttach"));
  exports.Set("loopDetach", Napi::Function::New(env, LoopDetachJs, "loopDetach"));
  exports.Set("loopStatus", Napi::Function::New(env, LoopStatusJs, "loopStatus"));
  exports.Set("loopList", Napi::Function::New(env, LoopListJs, "loopList"));
}

}  // namespace strata
