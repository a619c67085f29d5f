// TarApplier and TarExporter as JS classes whose blocking methods run on the
// libuv pool and return promises; one call in flight per object.
#include <memory>
#include <vector>

#include "../core/tar.h"
#include "../core/tar_split.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

// An archive problem as an Error: code ERR_ARCHIVE_* (or ERR_LAYER_*), the
// entry it concerns, and errno/syscall/path when a syscall failed.
Napi::Error ArchiveProblemError(Napi::Env env, const std::string& code,
                                const std::string& message, const std::string& entry,
                                const Failure& failure) {
  if (code.empty()) return ErrnoError(env, failure);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  if (!entry.empty()) error.Set("entry", Napi::String::New(env, entry));
  if (code == "ERR_ARCHIVE_APPLY") {
    Napi::Error cause = ErrnoError(env, failure);
    error.Set("errno", Napi::Number::New(env, -failure.err));
    error.Set("syscall", Napi::String::New(env, failure.syscall));
    if (!failure.path.empty()) error.Set("path", Napi::String::New(env, failure.path));
    error.Set("cause", cause.Value());
  }
  return error;
}

// A call on an archive object: one at a time (busy until it settles), the
// object and its input kept alive meanwhile, failures as archive problems.
template <typename Source>
Napi::Value RunCall(Napi::Env env, Napi::Object owner, Napi::Value input, bool* busy,
                    const Source& source, std::function<Failure()> work,
                    std::function<Napi::Value(Napi::Env)> done = nullptr) {
  *busy = true;
  return RunAsync(env, "strata.archive", std::move(work), std::move(done),
                  {{owner, input},
                   [busy] { *busy = false; },
                   [&source](Napi::Env e, const Failure& f) {
                     const auto& p = source.problem();
                     return ArchiveProblemError(e, p.code, p.message, p.entry, f);
                   }});
}

void ThrowIfBusy(Napi::Env env, bool busy) {
  if (!busy) return;
  Napi::Error error = Napi::Error::New(env, "another call on this object is still running");
  error.Set("code", Napi::String::New(env, "ERR_ARCHIVE_BUSY"));
  throw error;
}

// Hands a std::string to JS as a Buffer without copying it.
Napi::Value StringBuffer(Napi::Env env, std::string&& bytes) {
  auto* owned = new std::string(std::move(bytes));
  return Napi::Buffer<char>::New(env, owned->data(), owned->size(),
                                 [](Napi::Env, char*, std::string* s) { delete s; }, owned);
}

class Applier : public Napi::ObjectWrap<Applier> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TarApplier",
                       {InstanceMethod("write", &Applier::Write),
                        InstanceMethod("finish", &Applier::Finish),
                        InstanceMethod("close", &Applier::Close)});
  }

  // new TarApplier(dir, whiteouts: 'overlay' | 'remove' | 'index')
  explicit Applier(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Applier>(info) {
    std::string dir = PathArg(info, 0, "dir");
    std::string mode = StringArg(info, 1, "whiteouts", false);
    if (mode != "overlay" && mode != "remove" && mode != "index")
      ThrowArgError(info.Env(), "ERR_INVALID_ARG_VALUE",
                    "The \"whiteouts\" argument must be 'overlay', 'remove' or 'index'");
    WhiteoutMode whiteouts = mode == "overlay"  ? WhiteoutMode::Overlay
                             : mode == "remove" ? WhiteoutMode::Remove
                                                : WhiteoutMode::Index;
    if (Failure f = applier_.Open(dir, whiteouts))
      throw ErrnoError(info.Env(), f);
  }

 private:
  // write(chunk | chunks[]): applies the bytes in order. An array saves the
  // caller from concatenating small chunks.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Value arg = info.Length() > 0 ? info[0] : info.Env().Undefined();
    std::vector<std::pair<const uint8_t*, size_t>> pieces;
    // A private array keeps the Buffers alive even if the caller's array changes.
    Napi::Array held = Napi::Array::New(info.Env());
    if (arg.IsArray()) {
      Napi::Array array = arg.As<Napi::Array>();
      for (uint32_t i = 0; i < array.Length(); i++) {
        Napi::Value item = array.Get(i);
        if (!item.IsBuffer())
          ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE",
                        "The \"chunk\" argument must be a Buffer or an array of Buffers");
        auto buffer = item.As<Napi::Buffer<uint8_t>>();
        pieces.emplace_back(buffer.Data(), buffer.Length());
        held.Set(i, buffer);
      }
    } else {
      Napi::Buffer<uint8_t> chunk = BufferArg(info, 0, "chunk");
      pieces.emplace_back(chunk.Data(), chunk.Length());
      held.Set(0u, chunk);
    }
    ThrowIfBusy(info.Env(), busy_);
    return RunCall(info.Env(), Value(), held, &busy_, applier_, [this, pieces = std::move(pieces)] {
      for (const auto& [data, size] : pieces)
        if (Failure f = applier_.Write(data, size)) return f;
      return Ok();
    });
  }

  // Resolves { entries, contentSize, tarSplit }.
  Napi::Value Finish(const Napi::CallbackInfo& info) {
    ThrowIfBusy(info.Env(), busy_);
    return RunCall(
        info.Env(), Value(), info.Env().Undefined(), &busy_, applier_,
        [this] { return applier_.Finish(stats_, split_); },
        [this](Napi::Env env) -> Napi::Value {
          Napi::Object result = Napi::Object::New(env);
          result.Set("entries", Napi::Number::New(env, static_cast<double>(stats_.entries)));
          result.Set("contentSize", Napi::Number::New(env, static_cast<double>(stats_.content_size)));
          result.Set("tarSplit", StringBuffer(env, std::move(split_)));
          if (!stats_.diff_id.empty()) result.Set("diffId", Napi::String::New(env, stats_.diff_id));
          return result;
        });
  }

  // close(): releases the applier's fds; not while a write or finish runs.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    ThrowIfBusy(info.Env(), busy_);
    applier_.Close();
    return info.Env().Undefined();
  }

  TarApplier applier_;
  bool busy_ = false;
  TarStats stats_;
  std::string split_;
};

class Exporter : public Napi::ObjectWrap<Exporter> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TarExporter", {InstanceMethod("read", &Exporter::Read),
                                            InstanceMethod("close", &Exporter::Close)});
  }

  // new TarExporter(dir, tarSplit)
  explicit Exporter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Exporter>(info) {
    std::string dir = PathArg(info, 0, "dir");
    Napi::Buffer<uint8_t> split = BufferArg(info, 1, "tarSplit");
    std::string bytes(reinterpret_cast<const char*>(split.Data()), split.Length());
    if (Failure f = exporter_.Open(dir, bytes)) {
      const ExportProblem& p = exporter_.problem();
      throw ArchiveProblemError(info.Env(), p.code, p.message, p.entry, f);
    }
  }

 private:
  // read(maxBytes): resolves the next chunk, or null at the end.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    size_t max = Uint32Arg(info, 0, "maxBytes", 64u << 20);
    if (max == 0)
      ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", "The \"maxBytes\" argument must be > 0");
    ThrowIfBusy(info.Env(), busy_);
    // Uninitialized memory: the exporter overwrites what it hands out.
    auto out = std::shared_ptr<char>(new char[max], std::default_delete<char[]>());
    auto produced = std::make_shared<size_t>(0);
    return RunCall(
        info.Env(), Value(), info.Env().Undefined(), &busy_, exporter_,
        [this, out, produced, max] { return exporter_.Read(out.get(), max, *produced); },
        [out, produced](Napi::Env env) -> Napi::Value {
          if (*produced == 0) return env.Null();
          // The Buffer shares ownership of the memory.
          auto* owner = new std::shared_ptr<char>(out);
          return Napi::Buffer<char>::New(env, out.get(), *produced,
                                         [](Napi::Env, char*, std::shared_ptr<char>* o) { delete o; },
                                         owner);
        });
  }

  // close(): releases the exporter's fds; not while a read runs.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    ThrowIfBusy(info.Env(), busy_);
    exporter_.Close();
    return info.Env().Undefined();
  }

  TarExporter exporter_;
  bool busy_ = false;
};

}  // namespace

void InitArchive(Napi::Env env, Napi::Object exports) {
  exports.Set("TarApplier", Applier::Define(env));
  exports.Set("TarExporter", Exporter::Define(env));
}

}  // namespace strata
