#include <sys/statvfs.h>
#include <sys/xattr.h>

#include "../core/fs.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

std::string XattrNameArg(const Napi::CallbackInfo& info, size_t i) {
  return StringArg(info, i, "name", false);
}

Napi::Value GetXattrSync(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  std::string name = XattrNameArg(info, 1);
  std::vector<uint8_t> value;
  if (Failure f = GetXattr(path, name, value)) throw ErrnoError(info.Env(), f);
  return Napi::Buffer<uint8_t>::Copy(info.Env(), value.data(), value.size());
}

// lsetxattrSync(path, name, value, flags): flags is 0, XATTR_CREATE or XATTR_REPLACE.
Napi::Value SetXattrSync(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  std::string name = XattrNameArg(info, 1);
  Napi::Buffer<uint8_t> value = BufferArg(info, 2, "value");
  uint32_t flags = Uint32Arg(info, 3, "flags");
  XattrMode mode;
  switch (flags) {
    case 0: mode = XattrMode::kAny; break;
    case XATTR_CREATE: mode = XattrMode::kCreate; break;
    case XATTR_REPLACE: mode = XattrMode::kReplace; break;
    default:
      ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE",
                    "The \"flags\" argument must be 0, XATTR_CREATE or XATTR_REPLACE");
  }
  if (Failure f = SetXattr(path, name, value.Data(), value.Length(), mode))
    throw ErrnoError(info.Env(), f);
  return info.Env().Undefined();
}

Napi::Value ListXattrsSync(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  std::vector<std::string> names;
  if (Failure f = ListXattrs(path, names)) throw ErrnoError(info.Env(), f);
  Napi::Array array = Napi::Array::New(info.Env(), names.size());
  for (uint32_t i = 0; i < names.size(); i++)
    array.Set(i, Napi::String::New(info.Env(), names[i]));
  return array;
}

Napi::Value RemoveXattrSync(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  std::string name = XattrNameArg(info, 1);
  if (Failure f = RemoveXattr(path, name)) throw ErrnoError(info.Env(), f);
  return info.Env().Undefined();
}

// mknodSync(path, type, perm, major, minor); type is 'file', 'char',
// 'block', 'fifo' or 'socket'; major and minor must be 0 unless a device.
Napi::Value MknodSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = PathArg(info, 0, "path");
  std::string type_name = StringArg(info, 1, "type", false);
  uint32_t perm = Uint32Arg(info, 2, "mode", 07777);
  uint32_t major = Uint32Arg(info, 3, "major", 0xfff);
  uint32_t minor = Uint32Arg(info, 4, "minor", 0xfffff);
  NodeType type;
  if (type_name == "file") type = NodeType::kFile;
  else if (type_name == "char") type = NodeType::kChar;
  else if (type_name == "block") type = NodeType::kBlock;
  else if (type_name == "fifo") type = NodeType::kFifo;
  else if (type_name == "socket") type = NodeType::kSocket;
  else
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  "The \"type\" argument must be 'file', 'char', 'block', 'fifo' or 'socket'");
  bool device = type == NodeType::kChar || type == NodeType::kBlock;
  if (!device && (major != 0 || minor != 0))
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  "A device number is only valid for 'char' and 'block' nodes");
  if (Failure f = MakeNode(path, type, perm, major, minor)) throw ErrnoError(env, f);
  return env.Undefined();
}

Napi::Value WhiteoutSync(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  if (Failure f = MakeWhiteout(path)) throw ErrnoError(info.Env(), f);
  return info.Env().Undefined();
}

Napi::Object StatsObject(Napi::Env env, const FsStats& s) {
  Napi::Object o = Napi::Object::New(env);
  auto number = [&](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  o.Set("type", number(s.type));
  o.Set("typeName", Napi::String::New(env, FsTypeName(s.type)));
  o.Set("blockSize", number(s.block_size));
  o.Set("blocks", number(s.blocks));
  o.Set("blocksFree", number(s.blocks_free));
  o.Set("blocksAvailable", number(s.blocks_available));
  o.Set("files", number(s.files));
  o.Set("filesFree", number(s.files_free));
  o.Set("nameMax", number(s.name_max));
  o.Set("flags", number(s.flags));
  return o;
}

Napi::Value StatfsSync(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  FsStats stats;
  if (Failure f = StatFs(path, stats)) throw ErrnoError(info.Env(), f);
  return StatsObject(info.Env(), stats);
}

// statfs can block (a hung NFS server), so it also has a promise form.
Napi::Value StatfsJs(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  auto stats = std::make_shared<FsStats>();
  return RunAsync(
      info.Env(), "strata.statfs", [=] { return StatFs(path, *stats); },
      [=](Napi::Env env) { return StatsObject(env, *stats); });
}

Napi::Value SupportsDTypeJs(const Napi::CallbackInfo& info) {
  std::string dir = PathArg(info, 0, "dir");
  auto supported = std::make_shared<bool>(false);
  return RunAsync(
      info.Env(), "strata.supportsDType", [=] { return SupportsDType(dir, *supported); },
      [=](Napi::Env env) { return Napi::Boolean::New(env, *supported); });
}

// Linux 5.10's statfs flag, newer than some C libraries' headers.
constexpr unsigned long kStNoSymFollow = 0x2000;

Napi::Object FsConstants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  const std::pair<const char*, unsigned long> values[] = {
      {"XATTR_CREATE", XATTR_CREATE},     {"XATTR_REPLACE", XATTR_REPLACE},
      {"ST_RDONLY", ST_RDONLY},           {"ST_NOSUID", ST_NOSUID},
      {"ST_NODEV", ST_NODEV},             {"ST_NOEXEC", ST_NOEXEC},
      {"ST_SYNCHRONOUS", ST_SYNCHRONOUS}, {"ST_MANDLOCK", ST_MANDLOCK},
      {"ST_NOATIME", ST_NOATIME},         {"ST_NODIRATIME", ST_NODIRATIME},
      {"ST_RELATIME", ST_RELATIME},       {"ST_NOSYMFOLLOW", kStNoSymFollow},
  };
  for (const auto& [name, value] : values)
    c.Set(name, Napi::Number::New(env, static_cast<double>(value)));
  return c;
}

}  // namespace

void InitFs(Napi::Env env, Napi::Object exports) {
  exports.Set("lgetxattrSync", Napi::Function::New(env, GetXattrSync, "lgetxattrSync"));
  exports.Set("lsetxattrSync", Napi::Function::New(env, SetXattrSync, "lsetxattrSync"));
  exports.Set("llistxattrSync", Napi::Function::New(env, ListXattrsSync, "llistxattrSync"));
  exports.Set("lremovexattrSync", Napi::Function::New(env, RemoveXattrSync, "lremovexattrSync"));
  exports.Set("mknodSync", Napi::Function::New(env, MknodSync, "mknodSync"));
  exports.Set("whiteoutSync", Napi::Function::New(env, WhiteoutSync, "whiteoutSync"));
  exports.Set("statfsSync", Napi::Function::New(env, StatfsSync, "statfsSync"));
  exports.Set("statfs", Napi::Function::New(env, StatfsJs, "statfs"));
  exports.Set("supportsDType", Napi::Function::New(env, SupportsDTypeJs, "supportsDType"));
  exports.Set("fsConstants", FsConstants(env));
}

}  // namespace strata
