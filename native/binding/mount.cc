#include <sys/mount.h>

#include "../core/mount.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

// Every MS_* flag mount(2) accepts; anything else is a caller's mistake.
constexpr unsigned long kMountFlags =
    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_SYNCHRONOUS | MS_REMOUNT |
    MS_MANDLOCK | MS_DIRSYNC | MS_NOSYMFOLLOW | MS_NOATIME | MS_NODIRATIME |
    MS_BIND | MS_MOVE | MS_REC | MS_SILENT | MS_UNBINDABLE | MS_PRIVATE |
    MS_SLAVE | MS_SHARED | MS_RELATIME | MS_STRICTATIME | MS_LAZYTIME;

constexpr int kUmountFlags = MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW;

// mount(source, target, fstype, flags, data): source, fstype and data may be
// empty strings (passed to the kernel as NULL).
Napi::Value MountJs(const Napi::CallbackInfo& info) {
  std::string source = StringArg(info, 0, "source", true);
  std::string target = PathArg(info, 1, "target");
  std::string fstype = StringArg(info, 2, "fstype", true);
  uint32_t flags = Uint32Arg(info, 3, "flags");
  std::string data = StringArg(info, 4, "data", true);
  if (flags & ~kMountFlags)
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE",
                  "The \"flags\" argument has unknown mount flags");
  return RunAsync(info.Env(), "strata.mount", [=] {
    return Mount(source, target, fstype, flags, data);
  });
}

Napi::Value UmountJs(const Napi::CallbackInfo& info) {
  std::string target = PathArg(info, 0, "target");
  uint32_t flags = Uint32Arg(info, 1, "flags");
  if (flags & ~static_cast<uint32_t>(kUmountFlags))
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE",
                  "The \"flags\" argument has unknown umount2 flags");
  return RunAsync(info.Env(), "strata.umount2",
                  [=] { return Unmount(target, static_cast<int>(flags)); });
}

// isMountRootSync(path): true or false, or null where the kernel cannot tell.
Napi::Value IsMountRootSync(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  MountRoot root = MountRoot::kUnknown;
  if (Failure f = IsMountRoot(path, root)) throw ErrnoError(info.Env(), f);
  if (root == MountRoot::kUnknown) return info.Env().Null();
  return Napi::Boolean::New(info.Env(), root == MountRoot::kYes);
}

Napi::Object MountConstants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  const std::pair<const char*, unsigned long> flags[] = {
      {"MS_RDONLY", MS_RDONLY},       {"MS_NOSUID", MS_NOSUID},
      {"MS_NODEV", MS_NODEV},         {"MS_NOEXEC", MS_NOEXEC},
      {"MS_SYNCHRONOUS", MS_SYNCHRONOUS}, {"MS_REMOUNT", MS_REMOUNT},
      {"MS_MANDLOCK", MS_MANDLOCK},   {"MS_DIRSYNC", MS_DIRSYNC},
      {"MS_NOSYMFOLLOW", MS_NOSYMFOLLOW}, {"MS_NOATIME", MS_NOATIME},
      {"MS_NODIRATIME", MS_NODIRATIME}, {"MS_BIND", MS_BIND},
      {"MS_MOVE", MS_MOVE},           {"MS_REC", MS_REC},
      {"MS_SILENT", MS_SILENT},       {"MS_UNBINDABLE", MS_UNBINDABLE},
      {"MS_PRIVATE", MS_PRIVATE},     {"MS_SLAVE", MS_SLAVE},
      {"MS_SHARED", MS_SHARED},       {"MS_RELATIME", MS_RELATIME},
      {"MS_STRICTATIME", MS_STRICTATIME}, {"MS_LAZYTIME", MS_LAZYTIME},
      {"MNT_FORCE", MNT_FORCE},       {"MNT_DETACH", MNT_DETACH},
      {"MNT_EXPIRE", MNT_EXPIRE},     {"UMOUNT_NOFOLLOW", UMOUNT_NOFOLLOW},
  };
  for (const auto& [name, value] : flags)
    c.Set(name, Napi::Number::New(env, static_cast<double>(value)));
  return c;
}

}  // namespace

void InitMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, MountJs, "mount"));
  exports.Set("umount2", Napi::Function::New(env, UmountJs, "umount2"));
  exports.Set("isMountRootSync", Napi::Function::New(env, IsMountRootSync, "isMountRootSync"));
  exports.Set("mountConstants", MountConstants(env));
}

}  // namespace strata
