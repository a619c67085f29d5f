#include "common.h"

#include <cstring>
#include <limits>

#include "../core/errno_name.h"

namespace strata {

Napi::Error ErrnoError(Napi::Env env, const Failure& f) {
  std::string code = ErrnoName(f.err);
  std::string message = code + ": " + ErrnoMessage(f.err) + ", " + f.syscall;
  if (!f.path.empty()) message += " '" + f.path + "'";
  if (!f.dest.empty()) message += " -> '" + f.dest + "'";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, -f.err));
  error.Set("code", Napi::String::New(env, code));
  error.Set("syscall", Napi::String::New(env, f.syscall));
  if (!f.path.empty()) error.Set("path", Napi::String::New(env, f.path));
  if (!f.dest.empty()) error.Set("dest", Napi::String::New(env, f.dest));
  return error;
}

void ThrowArgError(Napi::Env env, const char* code, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

static Napi::Value Arg(const Napi::CallbackInfo& info, size_t i) {
  return i < info.Length() ? info[i] : info.Env().Undefined();
}

std::string CheckString(Napi::Env env, Napi::Value v, const std::string& name,
                        bool is_path, bool allow_empty) {
  if (!v.IsString())
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE",
                  "The \"" + name + "\" argument must be of type string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos)
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  "The \"" + name + "\" argument must not contain null bytes");
  if (s.empty() && (is_path || !allow_empty))
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  "The \"" + name + "\" argument must not be empty");
  return s;
}

std::string PathArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return CheckString(info.Env(), Arg(info, i), name, true, false);
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i,
                      const char* name, bool allow_empty) {
  return CheckString(info.Env(), Arg(info, i), name, false, allow_empty);
}

std::optional<std::string> OptionalStringArg(const Napi::CallbackInfo& info,
                                             size_t i, const char* name) {
  Napi::Value v = Arg(info, i);
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  return CheckString(info.Env(), v, name, false, true);
}

int64_t IntegerArg(const Napi::CallbackInfo& info, size_t i, const char* name,
                   int64_t min, int64_t max) {
  Napi::Value v = Arg(info, i);
  std::string n = name;
  if (!v.IsNumber())
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE",
                  "The \"" + n + "\" argument must be of type number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) ||
      d < static_cast<double>(min) || d > static_cast<double>(max))
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE",
                  "The \"" + n + "\" argument must be an integer >= " +
                      std::to_string(min) + " and <= " + std::to_string(max));
  return static_cast<int64_t>(d);
}

uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t i, const char* name,
                   uint32_t max) {
  return static_cast<uint32_t>(IntegerArg(info, i, name, 0, max));
}

int FdArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return static_cast<int>(
      IntegerArg(info, i, name, 0, std::numeric_limits<int>::max()));
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsBoolean())
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE",
                  std::string("The \"") + name +
                      "\" argument must be of type boolean");
  return v.As<Napi::Boolean>().Value();
}

Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t i,
                       const char* name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsObject() || v.IsArray())
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE",
                  std::string("The \"") + name +
                      "\" argument must be of type object");
  return v.As<Napi::Object>();
}

std::vector<std::string> PathArrayArg(const Napi::CallbackInfo& info, size_t i,
                                      const char* name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsArray())
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE",
                  std::string("The \"") + name + "\" argument must be an array");
  Napi::Array array = v.As<Napi::Array>();
  std::vector<std::string> out;
  out.reserve(array.Length());
  for (uint32_t k = 0; k < array.Length(); k++)
    out.push_back(CheckString(info.Env(), array.Get(k),
                              std::string(name) + "[" + std::to_string(k) + "]",
                              true, false));
  return out;
}

Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t i,
                                const char* name) {
  Napi::Value v = Arg(info, i);
  if (!v.IsBuffer())
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE",
                  std::string("The \"") + name +
                      "\" argument must be an instance of Buffer");
  return v.As<Napi::Buffer<uint8_t>>();
}

namespace {

class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, const char* name, std::function<Failure()> work,
      std::function<Napi::Value(Napi::Env)> done, AsyncExtras extras)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)),
        done_(std::move(done)),
        settled_(std::move(extras.settled)),
        error_(std::move(extras.error)) {
    for (Napi::Value value : extras.keep)
      if (value.IsObject()) kept_.push_back(Napi::Persistent(value.As<Napi::Object>()));
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override { failure_ = work_(); }

  // Errors are built here, not through SetError, so they keep errno and paths.
  void OnOK() override {
    Napi::Env env = Env();
    if (settled_) settled_();
    if (failure_) {
      deferred_.Reject((error_ ? error_(env, failure_) : ErrnoError(env, failure_)).Value());
      return;
    }
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<Failure()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::function<void()> settled_;
  std::function<Napi::Error(Napi::Env, const Failure&)> error_;
  std::vector<Napi::ObjectReference> kept_;
  Failure failure_;
};

}  // namespace

Napi::Promise RunAsync(Napi::Env env, const char* name,
                       std::function<Failure()> work,
                       std::function<Napi::Value(Napi::Env)> done,
                       AsyncExtras extras) {
  Job* job = new Job(env, name, std::move(work), std::move(done), std::move(extras));
  Napi::Promise promise = job->Promise();
  job->Queue();
  return promise;
}

}  // namespace strata
