#include <fcntl.h>
#include <sys/mount.h>

#include <climits>
#include <memory>

#include "../core/mount_api.h"
#include "areas.h"
#include "common.h"

namespace strata {

// Node-style error with the filesystem's own explanation appended, as in
// "EINVAL: Invalid argument, fsconfig 'size': e tmpfs: Bad value for 'size'".
// Also used by overlay.cc.
Napi::Error ErrnoErrorWithLog(Napi::Env env, const Failure& failure,
                              const std::string& kernel_log) {
  Napi::Error error = ErrnoError(env, failure);
  if (!kernel_log.empty()) {
    std::string message = error.Get("message").As<Napi::String>().Utf8Value();
    error.Set("message", Napi::String::New(env, message + ": " + kernel_log));
    error.Set("kernelLog", Napi::String::New(env, kernel_log));
  }
  return error;
}

namespace {

constexpr unsigned kAttrFlags = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC |
                                MOUNT_ATTR__ATIME | MOUNT_ATTR_NODIRATIME |
                                MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSYMFOLLOW;
constexpr unsigned kMoveMountFlags = MOVE_MOUNT__MASK;
constexpr unsigned kOpenTreeFlags = OPEN_TREE_CLONE | AT_RECURSIVE |
                                    AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW |
                                    AT_NO_AUTOMOUNT;
constexpr unsigned kFspickFlags =
    FSPICK_SYMLINK_NOFOLLOW | FSPICK_NO_AUTOMOUNT | FSPICK_EMPTY_PATH;
constexpr unsigned kSetattrFlags =
    AT_RECURSIVE | AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT;
constexpr unsigned kPropagations[] = {0, MS_PRIVATE, MS_SHARED, MS_SLAVE,
                                      MS_UNBINDABLE};

void CheckFlags(Napi::Env env, uint32_t flags, uint32_t known,
                const char* what) {
  if (flags & ~known)
    ThrowArgError(env, "ERR_OUT_OF_RANGE",
                  std::string("The \"flags\" argument has unknown ") + what +
                      " flags");
}

// A directory fd argument: an open fd or AT_FDCWD.
int DirFdArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  int64_t fd = IntegerArg(info, i, name, AT_FDCWD, INT_MAX);
  if (fd < 0 && fd != AT_FDCWD)
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE",
                  std::string("The \"") + name +
                      "\" argument must be an fd or AT_FDCWD");
  return static_cast<int>(fd);
}

// A path that may be empty (with AT_EMPTY_PATH, the fd itself).
std::string MaybeEmptyPathArg(const Napi::CallbackInfo& info, size_t i,
                              const char* name) {
  return StringArg(info, i, name, true);
}

// Resolves a new fd, or rejects with the failure and any kernel log.
struct FdResult {
  Failure failure;
  std::string kernel_log;
  Fd fd;
};

Napi::Value ResolveFd(Napi::Env env, FdResult& r) {
  if (r.failure) throw ErrnoErrorWithLog(env, r.failure, r.kernel_log);
  return Napi::Number::New(env, r.fd.release());
}

// fsopen(fstype) -> fd (always close-on-exec).
Napi::Value FsOpenJs(const Napi::CallbackInfo& info) {
  std::string fstype = StringArg(info, 0, "fstype", false);
  auto r = std::make_shared<FdResult>();
  return RunAsync(
      info.Env(), "strata.fsopen",
      [=] {
        r->failure = FsOpen(fstype, r->fd);
        return Ok();
      },
      [=](Napi::Env env) { return ResolveFd(env, *r); });
}

// fsconfig(fd, cmd, key, value, aux): key and value are strings or null as
// the command requires; aux is an fd for SET_FD/SET_PATH(_EMPTY), else 0.
Napi::Value FsConfigJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "fd");
  uint32_t cmd = Uint32Arg(info, 1, "cmd", FSCONFIG_CMD_RECONFIGURE);
  std::optional<std::string> key = OptionalStringArg(info, 2, "key");
  std::optional<std::string> value = OptionalStringArg(info, 3, "value");
  int aux = 0;
  bool wants_key =
      cmd != FSCONFIG_CMD_CREATE && cmd != FSCONFIG_CMD_RECONFIGURE;
  bool wants_value = cmd == FSCONFIG_SET_STRING || cmd == FSCONFIG_SET_PATH ||
                     cmd == FSCONFIG_SET_PATH_EMPTY;
  if (cmd == FSCONFIG_SET_BINARY)
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  "FSCONFIG_SET_BINARY is not supported");
  if (wants_key != (key.has_value() && !key->empty()))
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  wants_key ? "The \"key\" argument must be a non-empty string"
                            : "The \"key\" argument must be null here");
  if (wants_value != value.has_value())
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  wants_value ? "The \"value\" argument must be a string"
                              : "The \"value\" argument must be null here");
  if (cmd == FSCONFIG_SET_PATH && value->empty())
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  "The \"value\" argument must be a non-empty path");
  if (cmd == FSCONFIG_SET_FD || cmd == FSCONFIG_SET_PATH_EMPTY)
    aux = FdArg(info, 4, "aux");
  else if (cmd == FSCONFIG_SET_PATH)
    aux = DirFdArg(info, 4, "aux");
  auto r = std::make_shared<FdResult>();
  return RunAsync(
      env, "strata.fsconfig",
      [=] {
        r->failure = FsConfig(fd, cmd, key ? key->c_str() : nullptr,
                              value ? value->c_str() : nullptr, aux,
                              r->kernel_log);
        return Ok();
      },
      [=](Napi::Env env) -> Napi::Value {
        if (r->failure)
          throw ErrnoErrorWithLog(env, r->failure, r->kernel_log);
        return env.Undefined();
      });
}

// fsmount(fd, attrFlags) -> mount fd (always close-on-exec).
Napi::Value FsMountJs(const Napi::CallbackInfo& info) {
  int fd = FdArg(info, 0, "fd");
  uint32_t attrs = Uint32Arg(info, 1, "attrFlags");
  CheckFlags(info.Env(), attrs, kAttrFlags & ~MOUNT_ATTR_IDMAP, "MOUNT_ATTR");
  auto r = std::make_shared<FdResult>();
  return RunAsync(
      info.Env(), "strata.fsmount",
      [=] {
        r->failure = FsMount(fd, attrs, r->fd, r->kernel_log);
        return Ok();
      },
      [=](Napi::Env env) { return ResolveFd(env, *r); });
}

// moveMount(fromDirfd, fromPath, toDirfd, toPath, flags)
Napi::Value MoveMountJs(const Napi::CallbackInfo& info) {
  int from_dirfd = DirFdArg(info, 0, "fromDirfd");
  std::string from_path = MaybeEmptyPathArg(info, 1, "fromPath");
  int to_dirfd = DirFdArg(info, 2, "toDirfd");
  std::string to_path = MaybeEmptyPathArg(info, 3, "toPath");
  uint32_t flags = Uint32Arg(info, 4, "flags");
  CheckFlags(info.Env(), flags, kMoveMountFlags, "MOVE_MOUNT");
  return RunAsync(info.Env(), "strata.move_mount", [=] {
    return MoveMount(from_dirfd, from_path, to_dirfd, to_path, flags);
  });
}

// openTree(dirfd, path, flags) -> fd (always close-on-exec).
Napi::Value OpenTreeJs(const Napi::CallbackInfo& info) {
  int dirfd = DirFdArg(info, 0, "dirfd");
  std::string path = MaybeEmptyPathArg(info, 1, "path");
  uint32_t flags = Uint32Arg(info, 2, "flags");
  CheckFlags(info.Env(), flags, kOpenTreeFlags, "open_tree");
  auto r = std::make_shared<FdResult>();
  return RunAsync(
      info.Env(), "strata.open_tree",
      [=] {
        r->failure = OpenTree(dirfd, path, flags, r->fd);
        return Ok();
      },
      [=](Napi::Env env) { return ResolveFd(env, *r); });
}

// fspick(dirfd, path, flags) -> fs context fd (always close-on-exec).
Napi::Value FsPickJs(const Napi::CallbackInfo& info) {
  int dirfd = DirFdArg(info, 0, "dirfd");
  std::string path = MaybeEmptyPathArg(info, 1, "path");
  uint32_t flags = Uint32Arg(info, 2, "flags");
  CheckFlags(info.Env(), flags, kFspickFlags, "fspick");
  auto r = std::make_shared<FdResult>();
  return RunAsync(
      info.Env(), "strata.fspick",
      [=] {
        r->failure = FsPick(dirfd, path, flags, r->fd);
        return Ok();
      },
      [=](Napi::Env env) { return ResolveFd(env, *r); });
}

// mountSetattr(dirfd, path, flags, attrSet, attrClr, propagation, usernsFd)
Napi::Value MountSetattrJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int dirfd = DirFdArg(info, 0, "dirfd");
  std::string path = MaybeEmptyPathArg(info, 1, "path");
  uint32_t flags = Uint32Arg(info, 2, "flags");
  uint32_t attr_set = Uint32Arg(info, 3, "attrSet");
  uint32_t attr_clr = Uint32Arg(info, 4, "attrClr");
  uint32_t propagation = Uint32Arg(info, 5, "propagation");
  int64_t userns_fd = IntegerArg(info, 6, "usernsFd", -1, INT_MAX);
  CheckFlags(env, flags, kSetattrFlags, "mount_setattr");
  CheckFlags(env, attr_set | attr_clr, kAttrFlags, "MOUNT_ATTR");
  bool known = false;
  for (unsigned p : kPropagations) known = known || p == propagation;
  if (!known)
    ThrowArgError(env, "ERR_OUT_OF_RANGE",
                  "The \"propagation\" argument must be 0 or one of "
                  "MS_PRIVATE, MS_SHARED, MS_SLAVE, MS_UNBINDABLE");
  if ((attr_set & MOUNT_ATTR_IDMAP) != (userns_fd >= 0 ? MOUNT_ATTR_IDMAP : 0))
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  "The \"usernsFd\" argument must be an fd exactly when "
                  "MOUNT_ATTR_IDMAP is set");
  uint64_t userns = userns_fd >= 0 ? static_cast<uint64_t>(userns_fd) : 0;
  return RunAsync(env, "strata.mount_setattr", [=] {
    return MountSetattr(dirfd, path, flags, attr_set, attr_clr, propagation,
                        userns);
  });
}

Napi::Object MountApiConstants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  const std::pair<const char*, int64_t> constants[] = {
      {"FSCONFIG_SET_FLAG", FSCONFIG_SET_FLAG},
      {"FSCONFIG_SET_STRING", FSCONFIG_SET_STRING},
      {"FSCONFIG_SET_PATH", FSCONFIG_SET_PATH},
      {"FSCONFIG_SET_PATH_EMPTY", FSCONFIG_SET_PATH_EMPTY},
      {"FSCONFIG_SET_FD", FSCONFIG_SET_FD},
      {"FSCONFIG_CMD_CREATE", FSCONFIG_CMD_CREATE},
      {"FSCONFIG_CMD_RECONFIGURE", FSCONFIG_CMD_RECONFIGURE},
      {"MOUNT_ATTR_RDONLY", MOUNT_ATTR_RDONLY},
      {"MOUNT_ATTR_NOSUID", MOUNT_ATTR_NOSUID},
      {"MOUNT_ATTR_NODEV", MOUNT_ATTR_NODEV},
      {"MOUNT_ATTR_NOEXEC", MOUNT_ATTR_NOEXEC},
      {"MOUNT_ATTR__ATIME", MOUNT_ATTR__ATIME},
      {"MOUNT_ATTR_RELATIME", MOUNT_ATTR_RELATIME},
      {"MOUNT_ATTR_NOATIME", MOUNT_ATTR_NOATIME},
      {"MOUNT_ATTR_STRICTATIME", MOUNT_ATTR_STRICTATIME},
      {"MOUNT_ATTR_NODIRATIME", MOUNT_ATTR_NODIRATIME},
      {"MOUNT_ATTR_NOSYMFOLLOW", MOUNT_ATTR_NOSYMFOLLOW},
      {"MOVE_MOUNT_F_SYMLINKS", MOVE_MOUNT_F_SYMLINKS},
      {"MOVE_MOUNT_F_AUTOMOUNTS", MOVE_MOUNT_F_AUTOMOUNTS},
      {"MOVE_MOUNT_F_EMPTY_PATH", MOVE_MOUNT_F_EMPTY_PATH},
      {"MOVE_MOUNT_T_SYMLINKS", MOVE_MOUNT_T_SYMLINKS},
      {"MOVE_MOUNT_T_AUTOMOUNTS", MOVE_MOUNT_T_AUTOMOUNTS},
      {"MOVE_MOUNT_T_EMPTY_PATH", MOVE_MOUNT_T_EMPTY_PATH},
      {"OPEN_TREE_CLONE", OPEN_TREE_CLONE},
      {"FSPICK_SYMLINK_NOFOLLOW", FSPICK_SYMLINK_NOFOLLOW},
      {"FSPICK_NO_AUTOMOUNT", FSPICK_NO_AUTOMOUNT},
      {"FSPICK_EMPTY_PATH", FSPICK_EMPTY_PATH},
      {"AT_FDCWD", AT_FDCWD},
      {"AT_RECURSIVE", AT_RECURSIVE},
      {"AT_EMPTY_PATH", AT_EMPTY_PATH},
      {"AT_SYMLINK_NOFOLLOW", AT_SYMLINK_NOFOLLOW},
      {"AT_NO_AUTOMOUNT", AT_NO_AUTOMOUNT},
      {"MS_PRIVATE", MS_PRIVATE},
      {"MS_SHARED", MS_SHARED},
      {"MS_SLAVE", MS_SLAVE},
      {"MS_UNBINDABLE", MS_UNBINDABLE},
  };
  for (const auto& [name, value] : constants)
    c.Set(name, Napi::Number::New(env, static_cast<double>(value)));
  return c;
}

}  // namespace

void InitMountApi(Napi::Env env, Napi::Object exports) {
  exports.Set("fsopen", Napi::Function::New(env, FsOpenJs, "fsopen"));
  exports.Set("fsconfig", Napi::Function::New(env, FsConfigJs, "fsconfig"));
  exports.Set("fsmount", Napi::Function::New(env, FsMountJs, "fsmount"));
  exports.Set("moveMount", Napi::Function::New(env, MoveMountJs, "moveMount"));
  exports.Set("openTree", Napi::Function::New(env, OpenTreeJs, "openTree"));
  exports.Set("fspick", Napi::Function::New(env, FsPickJs, "fspick"));
  exports.Set("mountSetattr",
              Napi::Function::New(env, MountSetattrJs, "mountSetattr"));
  exports.Set("mountApiConstants", MountApiConstants(env));
}

}  // namespace strata
