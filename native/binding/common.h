// N-API glue shared by every area: argument checks that throw TypeErrors,
// Node-style errno errors, and a promise-returning worker for blocking calls.
#pragma once
#include <napi.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "../core/result.h"

namespace strata {

// An Error shaped like Node's fs errors: code, errno (negative), syscall,
// path, dest, and the message "CODE: text, syscall 'path' -> 'dest'".
Napi::Error ErrnoError(Napi::Env env, const Failure& failure);

// Throws a TypeError with code ERR_INVALID_ARG_TYPE or ERR_INVALID_ARG_VALUE.
[[noreturn]] void ThrowArgError(Napi::Env env, const char* code,
                                const std::string& message);

// Argument readers. Each validates and throws a TypeError naming the argument.
std::string PathArg(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string StringArg(const Napi::CallbackInfo& info, size_t i,
                      const char* name, bool allow_empty);
std::optional<std::string> OptionalStringArg(const Napi::CallbackInfo& info,
                                             size_t i, const char* name);
uint32_t Uint32Arg(const Napi::CallbackInfo& info, size_t i, const char* name,
                   uint32_t max = UINT32_MAX);
int64_t IntegerArg(const Napi::CallbackInfo& info, size_t i, const char* name,
                   int64_t min, int64_t max);
int FdArg(const Napi::CallbackInfo& info, size_t i, const char* name);
bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Object ObjectArg(const Napi::CallbackInfo& info, size_t i,
                       const char* name);
std::vector<std::string> PathArrayArg(const Napi::CallbackInfo& info, size_t i,
                                      const char* name);
Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t i,
                                const char* name);

// Checks a string taken from an options object (no NUL, non-empty for paths).
std::string CheckString(Napi::Env env, Napi::Value v, const std::string& name,
                        bool is_path, bool allow_empty);

// What a call on the libuv pool needs besides its work, for the calls of an
// object (the archive classes): values to keep alive while it runs, a hook on
// the JS thread before it settles, and how a failure becomes an Error.
struct AsyncExtras {
  std::vector<Napi::Value> keep;
  std::function<void()> settled;
  std::function<Napi::Error(Napi::Env, const Failure&)> error;
};

// Runs `work` on the libuv pool and returns a promise. `work` must not touch
// N-API; it reports failure through its Failure (an ErrnoError unless
// `extras.error` says otherwise). `done` builds the resolved value on the JS
// thread (undefined when absent).
Napi::Promise RunAsync(Napi::Env env, const char* name,
                       std::function<Failure()> work,
                       std::function<Napi::Value(Napi::Env)> done = nullptr,
                       AsyncExtras extras = {});

}  // namespace strata
