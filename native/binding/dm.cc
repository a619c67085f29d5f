#include <cstring>
#include <memory>

#include "../core/dm.h"
#include "../core/errno_name.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53) - 1;
constexpr size_t kMaxNameLength = 127;   // DM_NAME_LEN less the NUL
constexpr size_t kMaxUuidLength = 128;   // DM_UUID_LEN less the NUL
constexpr size_t kMaxTypeLength = 15;    // DM_MAX_TYPE_NAME less the NUL

// A Node-style error for a failed DM ioctl: syscall "ioctl", the command in
// the message and in `command`, the device as `path`, and the kernel's
// explanation (if it logged one) at the end of the message.
Napi::Error DmError(Napi::Env env, const Failure& failure, const std::string& reason) {
  if (strncmp(failure.syscall, "DM_", 3) != 0) return ErrnoError(env, failure);
  Failure as_ioctl = failure;
  as_ioctl.syscall = "ioctl";
  Napi::Error error = ErrnoError(env, as_ioctl);
  std::string message = ErrnoName(failure.err) + ": " + ErrnoMessage(failure.err) +
                        ", ioctl " + failure.syscall;
  if (!failure.path.empty()) message += " '" + failure.path + "'";
  if (!reason.empty()) message += " (kernel: " + reason + ")";
  error.Set("message", Napi::String::New(env, message));
  error.Set("command", Napi::String::New(env, failure.syscall));
  return error;
}

// RunAsync for DM calls: `work` may explain its failure in `reason`, and the
// rejection is a DmError.
Napi::Promise RunDm(Napi::Env env, const char* name,
                    std::function<Failure(std::string& reason)> work,
                    std::function<Napi::Value(Napi::Env)> done = nullptr) {
  struct Outcome {
    Failure failure;
    std::string reason;
  };
  auto outcome = std::make_shared<Outcome>();
  return RunAsync(
      env, name,
      [=] {
        outcome->failure = work(outcome->reason);
        return Ok();
      },
      [=](Napi::Env env) -> Napi::Value {
        if (outcome->failure) throw DmError(env, outcome->failure, outcome->reason);
        return done ? done(env) : env.Undefined();
      });
}

// A device name as the kernel takes it, and usable as /dev/mapper/<name>.
std::string NameArg(const Napi::CallbackInfo& info, size_t i) {
  std::string name = StringArg(info, i, "name", false);
  if (name.size() > kMaxNameLength || name.find('/') != std::string::npos || name == "." ||
      name == "..")
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_VALUE",
                  "The \"name\" argument must be at most 127 bytes, without '/', and not "
                  "'.' or '..'");
  return name;
}

uint64_t IntegerProperty(Napi::Object object, const std::string& name, const char* key,
                         int64_t min) {
  Napi::Value v = object.Get(key);
  std::string full = name + "." + key;
  if (!v.IsNumber())
    ThrowArgError(object.Env(), "ERR_INVALID_ARG_TYPE",
                  "The \"" + full + "\" property must be of type number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < static_cast<double>(min) ||
      d > static_cast<double>(kMaxSafeInteger))
    ThrowArgError(object.Env(), "ERR_OUT_OF_RANGE",
                  "The \"" + full + "\" property must be an integer >= " +
                      std::to_string(min) + " and <= " + std::to_string(kMaxSafeInteger));
  return static_cast<uint64_t>(d);
}

// targets: a non-empty array of { start, length, type, params }.
std::vector<DmTarget> TargetsArg(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  Napi::Value v = i < info.Length() ? info[i] : env.Undefined();
  if (!v.IsArray())
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "The \"targets\" argument must be an array");
  Napi::Array array = v.As<Napi::Array>();
  if (array.Length() == 0)
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE", "The \"targets\" argument must not be empty");
  std::vector<DmTarget> targets;
  for (uint32_t k = 0; k < array.Length(); k++) {
    std::string name = "targets[" + std::to_string(k) + "]";
    Napi::Value item = array.Get(k);
    if (!item.IsObject() || item.IsArray())
      ThrowArgError(env, "ERR_INVALID_ARG_TYPE",
                    "The \"" + name + "\" element must be of type object");
    Napi::Object o = item.As<Napi::Object>();
    DmTarget target;
    target.start = IntegerProperty(o, name, "start", 0);
    target.length = IntegerProperty(o, name, "length", 1);
    target.type = CheckString(env, o.Get("type"), name + ".type", false, false);
    if (target.type.size() > kMaxTypeLength)
      ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                    "The \"" + name + ".type\" property must be at most 15 bytes");
    target.text = CheckString(env, o.Get("params"), name + ".params", false, true);
    targets.push_back(std::move(target));
  }
  return targets;
}

Napi::Object InfoObject(Napi::Env env, const DmInfo& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", Napi::String::New(env, info.name));
  o.Set("uuid", Napi::String::New(env, info.uuid));
  o.Set("path", Napi::String::New(env, DmNodePath(info.name)));
  o.Set("major", Napi::Number::New(env, info.major));
  o.Set("minor", Napi::Number::New(env, info.minor));
  o.Set("openCount", Napi::Number::New(env, info.open_count));
  o.Set("eventNr", Napi::Number::New(env, info.event_nr));
  o.Set("targetCount", Napi::Number::New(env, info.target_count));
  o.Set("suspended", Napi::Boolean::New(env, info.suspended));
  o.Set("readOnly", Napi::Boolean::New(env, info.read_only));
  o.Set("activeTable", Napi::Boolean::New(env, info.active_table));
  o.Set("inactiveTable", Napi::Boolean::New(env, info.inactive_table));
  o.Set("deferredRemove", Napi::Boolean::New(env, info.deferred_remove));
  return o;
}

Napi::Value DmVersionJs(const Napi::CallbackInfo& info) {
  struct Version {
    uint32_t numbers[3] = {};
  };
  auto version = std::make_shared<Version>();
  return RunDm(
      info.Env(), "strata.dmVersion", [=](std::string&) { return DmVersion(version->numbers); },
      [=](Napi::Env env) {
        Napi::Array a = Napi::Array::New(env, 3);
        for (uint32_t i = 0; i < 3; i++) a.Set(i, Napi::Number::New(env, version->numbers[i]));
        return a;
      });
}

// dmCreate(name, uuid): uuid may be "".
Napi::Value DmCreateJs(const Napi::CallbackInfo& info) {
  std::string name = NameArg(info, 0);
  std::string uuid = StringArg(info, 1, "uuid", true);
  if (uuid.size() > kMaxUuidLength)
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_VALUE",
                  "The \"uuid\" argument must be at most 128 bytes");
  auto result = std::make_shared<DmInfo>();
  return RunDm(
      info.Env(), "strata.dmCreate",
      [=](std::string&) { return DmCreate(name, uuid, *result); },
      [=](Napi::Env env) { return InfoObject(env, *result); });
}

Napi::Value DmLoadTableJs(const Napi::CallbackInfo& info) {
  std::string name = NameArg(info, 0);
  std::vector<DmTarget> targets = TargetsArg(info, 1);
  bool read_only = BoolArg(info, 2, "readOnly");
  return RunDm(info.Env(), "strata.dmLoadTable", [=](std::string& reason) {
    return DmLoadTable(name, targets, read_only, reason);
  });
}

Napi::Value DmSuspendJs(const Napi::CallbackInfo& info) {
  std::string name = NameArg(info, 0);
  auto result = std::make_shared<DmInfo>();
  return RunDm(
      info.Env(), "strata.dmSuspend", [=](std::string&) { return DmSuspend(name, *result); },
      [=](Napi::Env env) { return InfoObject(env, *result); });
}

Napi::Value DmResumeJs(const Napi::CallbackInfo& info) {
  std::string name = NameArg(info, 0);
  auto result = std::make_shared<DmInfo>();
  return RunDm(
      info.Env(), "strata.dmResume", [=](std::string&) { return DmResume(name, *result); },
      [=](Napi::Env env) { return InfoObject(env, *result); });
}

// dmRemove(name, deferred) resolves to { deferred }: true when the device
// was still open and goes at its last close.
Napi::Value DmRemoveJs(const Napi::CallbackInfo& info) {
  std::string name = NameArg(info, 0);
  bool deferred = BoolArg(info, 1, "deferred");
  auto was_deferred = std::make_shared<bool>(false);
  return RunDm(
      info.Env(), "strata.dmRemove",
      [=](std::string&) { return DmRemove(name, deferred, *was_deferred); },
      [=](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("deferred", Napi::Boolean::New(env, *was_deferred));
        return o;
      });
}

Napi::Value DmStatusJs(const Napi::CallbackInfo& info) {
  std::string name = NameArg(info, 0);
  auto result = std::make_shared<DmInfo>();
  return RunDm(
      info.Env(), "strata.dmStatus", [=](std::string&) { return DmStatus(name, *result); },
      [=](Napi::Env env) { return InfoObject(env, *result); });
}

// dmTableStatus(name, table) resolves to { info, targets: [{ start, length,
// type, text }] }: text is the status, or with `table` the table params.
Napi::Value DmTableStatusJs(const Napi::CallbackInfo& info) {
  std::string name = NameArg(info, 0);
  bool table = BoolArg(info, 1, "table");
  struct Result {
    DmInfo info;
    std::vector<DmTarget> targets;
  };
  auto result = std::make_shared<Result>();
  return RunDm(
      info.Env(), "strata.dmTableStatus",
      [=](std::string&) { return DmTableStatus(name, table, result->info, result->targets); },
      [=](Napi::Env env) {
        Napi::Array targets = Napi::Array::New(env, result->targets.size());
        for (uint32_t k = 0; k < result->targets.size(); k++) {
          const DmTarget& t = result->targets[k];
          Napi::Object o = Napi::Object::New(env);
          o.Set("start", Napi::Number::New(env, static_cast<double>(t.start)));
          o.Set("length", Napi::Number::New(env, static_cast<double>(t.length)));
          o.Set("type", Napi::String::New(env, t.type));
          o.Set("text", Napi::String::New(env, t.text));
          targets.Set(k, o);
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("info", InfoObject(env, result->info));
        o.Set("targets", targets);
        return o;
      });
}

// dmMessage(name, sector, message) resolves to the target's reply ("" if none).
Napi::Value DmMessageJs(const Napi::CallbackInfo& info) {
  std::string name = NameArg(info, 0);
  uint64_t sector = static_cast<uint64_t>(IntegerArg(info, 1, "sector", 0, kMaxSafeInteger));
  std::string message = StringArg(info, 2, "message", false);
  auto response = std::make_shared<std::string>();
  return RunDm(
      info.Env(), "strata.dmMessage",
      [=](std::string& reason) { return DmMessage(name, sector, message, *response, reason); },
      [=](Napi::Env env) { return Napi::String::New(env, *response); });
}

Napi::Value DmListJs(const Napi::CallbackInfo& info) {
  auto devices = std::make_shared<std::vector<DmListed>>();
  return RunDm(
      info.Env(), "strata.dmList", [=](std::string&) { return DmList(*devices); },
      [=](Napi::Env env) {
        Napi::Array a = Napi::Array::New(env, devices->size());
        for (uint32_t k = 0; k < devices->size(); k++) {
          const DmListed& d = (*devices)[k];
          Napi::Object o = Napi::Object::New(env);
          o.Set("name", Napi::String::New(env, d.name));
          o.Set("major", Napi::Number::New(env, d.major));
          o.Set("minor", Napi::Number::New(env, d.minor));
          a.Set(k, o);
        }
        return a;
      });
}

}  // namespace

void InitDm(Napi::Env env, Napi::Object exports) {
  const std::pair<const char*, Napi::Function::Callback> functions[] = {
      {"dmVersion", DmVersionJs},     {"dmCreate", DmCreateJs},
      {"dmLoadTable", DmLoadTableJs}, {"dmSuspend", DmSuspendJs},
      {"dmResume", DmResumeJs},       {"dmRemove", DmRemoveJs},
      {"dmStatus", DmStatusJs},       {"dmTableStatus", DmTableStatusJs},
      {"dmMessage", DmMessageJs},     {"dmList", DmListJs},
  };
  for (const auto& [name, callback] : functions)
    exports.Set(name, Napi::Function::New(env, callback, name));
}

}  // namespace strata
