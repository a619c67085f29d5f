#include "../core/resolve.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

// openInTree(root, path, create, kind) -> O_PATH fd; kind is 'directory' or 'file'.
Napi::Value OpenInTreeJs(const Napi::CallbackInfo& info) {
  std::string root = PathArg(info, 0, "root");
  std::string path = PathArg(info, 1, "path");
  bool create = BoolArg(info, 2, "create");
  std::string kind_name = StringArg(info, 3, "kind", false);
  TargetKind kind;
  if (kind_name == "directory") kind = TargetKind::kDirectory;
  else if (kind_name == "file") kind = TargetKind::kFile;
  else
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_VALUE",
                  "The \"kind\" argument must be 'directory' or 'file'");
  auto fd = std::make_shared<Fd>();
  return RunAsync(
      info.Env(), "strata.openInTree",
      [=] { return OpenInTree(root, path, create, kind, *fd); },
      [=](Napi::Env env) { return Napi::Number::New(env, fd->release()); });
}

}  // namespace

void InitResolve(Napi::Env env, Napi::Object exports) {
  exports.Set("openInTree", Napi::Function::New(env, OpenInTreeJs, "openInTree"));
}

}  // namespace strata
