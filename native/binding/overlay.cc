#include <memory>

#include "../core/overlay.h"
#include "areas.h"
#include "common.h"

namespace strata {

// Defined in mount_api.cc: a Node-style error with the fs context's log.
Napi::Error ErrnoErrorWithLog(Napi::Env env, const Failure& failure,
                              const std::string& kernel_log);

namespace {

const char* MethodName(OverlayMethod method) {
  switch (method) {
    case OverlayMethod::kLowerdirPlus:
      return "lowerdir+";
    case OverlayMethod::kLegacy:
      return "legacy";
    case OverlayMethod::kAuto:
      break;
  }
  return "auto";
}

OverlayMethod MethodArg(const Napi::CallbackInfo& info, size_t i) {
  std::string name = StringArg(info, i, "method", false);
  for (OverlayMethod m : {OverlayMethod::kAuto, OverlayMethod::kLowerdirPlus,
                          OverlayMethod::kLegacy})
    if (name == MethodName(m)) return m;
  ThrowArgError(
      info.Env(), "ERR_INVALID_ARG_VALUE",
      "The \"method\" argument must be 'auto', 'lowerdir+' or 'legacy'");
}

std::string OptionalPathArg(const Napi::CallbackInfo& info, size_t i,
                            const char* name) {
  Napi::Value v = i < info.Length() ? info[i] : info.Env().Undefined();
  if (v.IsUndefined() || v.IsNull()) return {};
  return CheckString(info.Env(), v, name, true, false);
}

// {key: string | true}: true sets a flag option.
std::vector<std::pair<std::string, std::string>> OptionsArg(
    const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  Napi::Object object = ObjectArg(info, i, "options");
  Napi::Array keys = object.GetPropertyNames();
  std::vector<std::pair<std::string, std::string>> options;
  for (uint32_t k = 0; k < keys.Length(); k++) {
    std::string key = keys.Get(k).As<Napi::String>().Utf8Value();
    Napi::Value value = object.Get(key);
    std::string name = "options." + key;
    if (value.IsBoolean() && value.As<Napi::Boolean>().Value())
      options.emplace_back(key, "");
    else if (value.IsString())
      options.emplace_back(key, CheckString(env, value, name, false, false));
    else
      ThrowArgError(env, "ERR_INVALID_ARG_TYPE",
                    "The \"" + name + "\" option must be a string or true");
  }
  return options;
}

// mountOverlay(target, lowers, upper, work, options, method)
//   -> {method: 'lowerdir+' | 'legacy', layersByFd}
Napi::Value MountOverlayJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string target = PathArg(info, 0, "target");
  OverlaySpec spec;
  spec.lowers = PathArrayArg(info, 1, "lowers");
  spec.upper = OptionalPathArg(info, 2, "upper");
  spec.work = OptionalPathArg(info, 3, "work");
  spec.options = OptionsArg(info, 4);
  OverlayMethod method = MethodArg(info, 5);
  std::string invalid = OverlaySpecError(spec);
  if (!invalid.empty()) ThrowArgError(env, "ERR_INVALID_ARG_VALUE", invalid);
  struct Result {
    Failure failure;
    std::string kernel_log;
    OverlayMounted mounted;
  };
  auto r = std::make_shared<Result>();
  return RunAsync(
      env, "strata.mountOverlay",
      [=] {
        r->failure =
            MountOverlay(spec, target, method, r->mounted, r->kernel_log);
        return Ok();
      },
      [=](Napi::Env env) -> Napi::Value {
        if (r->failure) throw ErrnoErrorWithLog(env, r->failure, r->kernel_log);
        Napi::Object result = Napi::Object::New(env);
        result.Set("method", MethodName(r->mounted.method));
        result.Set("layersByFd",
                   static_cast<double>(r->mounted.layers_by_fd));
        return result;
      });
}

// probeOverlayFeatures(): cheap after the first call (cached in core).
Napi::Value ProbeOverlayFeaturesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const OverlayFeatures& f = ProbeOverlayFeatures();
  Napi::Object result = Napi::Object::New(env);
  result.Set("available", f.available);
  result.Set("paramsChecked", f.params_checked);
  result.Set("lowerdirPlus", f.lowerdir_plus);
  result.Set("datadirPlus", f.datadir_plus);
  result.Set("layersByFd", f.layers_by_fd);
  result.Set("metacopy", f.metacopy);
  result.Set("index", f.index);
  result.Set("redirectDir", f.redirect_dir);
  result.Set("volatile", f.volatile_);
  result.Set("userxattr", f.userxattr);
  Napi::Object params = Napi::Object::New(env);
  for (const auto& [name, value] : f.module_params) params.Set(name, value);
  result.Set("moduleParams", params);
  return result;
}

// overlayMaxLowers(): counted on the first call only.
Napi::Value OverlayMaxLowersJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(OverlayMaxLowers()));
}

}  // namespace

void InitOverlay(Napi::Env env, Napi::Object exports) {
  exports.Set("mountOverlay",
              Napi::Function::New(env, MountOverlayJs, "mountOverlay"));
  exports.Set("probeOverlayFeatures",
              Napi::Function::New(env, ProbeOverlayFeaturesJs,
                                  "probeOverlayFeatures"));
  exports.Set("overlayMaxLowers",
              Napi::Function::New(env, OverlayMaxLowersJs, "overlayMaxLowers"));
}

}  // namespace strata
