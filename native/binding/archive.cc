// TarApplier and TarExporter as JS classes whose blocking methods run on the
// libuv pool and return promises; one call in flight per object.
#include <algorithm>
#include <array>
#include <memory>
#include <utility>
#include <vector>

#include "../core/digest_chain.h"
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

  // new TarApplier(dir, whiteouts: 'overlay' | 'remove' | 'index', hash?: boolean)
  explicit Applier(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Applier>(info) {
    std::string dir = PathArg(info, 0, "dir");
    std::string mode = StringArg(info, 1, "whiteouts", false);
    bool hash = info.Length() > 2 && !info[2].IsUndefined() && BoolArg(info, 2, "hash");
    if (mode != "overlay" && mode != "remove" && mode != "index")
      ThrowArgError(info.Env(), "ERR_INVALID_ARG_VALUE",
                    "The \"whiteouts\" argument must be 'overlay', 'remove' or 'index'");
    WhiteoutMode whiteouts = mode == "overlay"  ? WhiteoutMode::Overlay
                             : mode == "remove" ? WhiteoutMode::Remove
                                                : WhiteoutMode::Index;
    if (Failure f = applier_.Open(dir, whiteouts, hash))
      throw ErrnoError(info.Env(), f);
  }

 private:
  // write(chunk | pieces[]): applies the bytes in order. An array saves the
  // caller from concatenating small chunks; its pieces are Buffers or
  // { path, size }: bytes the applier reads from a file itself (WriteFile).
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value arg = info.Length() > 0 ? info[0] : env.Undefined();
    struct Piece {
      const uint8_t* data = nullptr;  // a Buffer's bytes,
      size_t size = 0;
      std::string path;               // or, when not empty, those of a file
    };
    std::vector<Piece> pieces;
    // A private array keeps the Buffers alive even if the caller's array changes.
    Napi::Array held = Napi::Array::New(env);
    if (arg.IsArray()) {
      Napi::Array array = arg.As<Napi::Array>();
      for (uint32_t i = 0; i < array.Length(); i++) {
        Napi::Value item = array.Get(i);
        if (item.IsBuffer()) {
          auto buffer = item.As<Napi::Buffer<uint8_t>>();
          pieces.push_back({buffer.Data(), buffer.Length(), {}});
          held.Set(i, buffer);
          continue;
        }
        Napi::Value path, size;
        if (item.IsObject()) {
          path = item.As<Napi::Object>().Get("path");
          size = item.As<Napi::Object>().Get("size");
        }
        double bytes = !size.IsEmpty() && size.IsNumber() ? size.As<Napi::Number>().DoubleValue() : -1;
        if (path.IsEmpty() || !path.IsString() || !(bytes >= 0 && bytes <= 9007199254740991.0) ||
            bytes != static_cast<double>(static_cast<uint64_t>(bytes)))
          ThrowArgError(env, "ERR_INVALID_ARG_TYPE",
                        "The \"chunk\" argument must be a Buffer or an array of Buffers and "
                        "{ path, size } objects");
        Piece piece;
        piece.path = CheckString(env, path, "path", true, false);
        piece.size = static_cast<size_t>(bytes);
        pieces.push_back(std::move(piece));
      }
    } else {
      Napi::Buffer<uint8_t> chunk = BufferArg(info, 0, "chunk");
      pieces.push_back({chunk.Data(), chunk.Length(), {}});
      held.Set(0u, chunk);
    }
    ThrowIfBusy(env, busy_);
    return RunCall(env, Value(), held, &busy_, applier_, [this, pieces = std::move(pieces)] {
      for (const Piece& piece : pieces) {
        Failure f = piece.path.empty() ? applier_.Write(piece.data, piece.size)
                                       : applier_.WriteFile(piece.path, piece.size);
        if (f) return f;
      }
      return Ok();
    });
  }

  // Resolves { entries, contentSize, tarSplit } (and diffId, checkpoints when it hashes).
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
          if (!stats_.diff_id.empty()) {
            result.Set("diffId", Napi::String::New(env, stats_.diff_id));
            result.Set("checkpoints", StringBuffer(env, std::move(stats_.checkpoints)));
          }
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
    return DefineClass(env, "TarExporter", {InstanceMethod("size", &Exporter::Size),
                                            InstanceMethod("readRange", &Exporter::ReadRange),
                                            InstanceMethod("checkRange", &Exporter::CheckRange),
                                            InstanceMethod("close", &Exporter::Close)});
  }

  // new TarExporter(dir, tarSplit)
  explicit Exporter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Exporter>(info) {
    std::string dir = PathArg(info, 0, "dir");
    Napi::Buffer<uint8_t> split = BufferArg(info, 1, "tarSplit");
    std::string bytes(reinterpret_cast<const char*>(split.Data()), split.Length());
    ExportProblem problem;
    if (Failure f = exporter_.Open(dir, std::move(bytes), problem))
      throw ArchiveProblemError(info.Env(), problem.code, problem.message, problem.entry, f);
  }

 private:
  // size(): bytes of the whole tar.
  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(exporter_.size()));
  }

  // A range as (offset, length) arguments, inside the tar.
  std::pair<uint64_t, size_t> RangeArgs(const Napi::CallbackInfo& info) {
    uint64_t offset = static_cast<uint64_t>(IntegerArg(info, 0, "offset", 0, int64_t{1} << 53));
    size_t length = Uint32Arg(info, 1, "length", 64u << 20);
    if (offset > exporter_.size() || length > exporter_.size() - offset)
      ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", "the range must lie within the tar");
    return {offset, length};
  }

  // Runs a call; several may run at once, close() waits for none of them.
  Napi::Value Run(Napi::Env env, std::shared_ptr<ExportProblem> problem, std::vector<Napi::Value> keep,
                  std::function<Failure()> work, std::function<Napi::Value(Napi::Env)> done) {
    calls_++;
    keep.push_back(Value());
    return RunAsync(env, "strata.export", std::move(work), std::move(done),
                    {std::move(keep), [this] { calls_--; },
                     [problem](Napi::Env e, const Failure& f) {
                       return ArchiveProblemError(e, problem->code, problem->message, problem->entry, f);
                     }});
  }

  // readRange(offset, length, state, final): resolves { bytes, hash }. With
  // `state` undefined nothing is hashed (hash absent); null starts the hash
  // at the tar's start (offset 0), a 32-byte state continues one (see
  // digest.cc hashSegment); `hash` is then the end state, or with `final` the
  // digest.
  Napi::Value ReadRange(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto [offset, length] = RangeArgs(info);
    bool hashing = !info[2].IsUndefined();
    bool resume = hashing && !info[2].IsNull();
    Napi::Buffer<uint8_t> state = resume ? BufferArg(info, 2, "state") : Napi::Buffer<uint8_t>();
    bool final = hashing && BoolArg(info, 3, "final");
    if (resume && state.Length() != Sha256::kStateSize)
      ThrowArgError(env, "ERR_INVALID_ARG_VALUE", "The \"state\" argument must be 32 bytes");
    if (hashing && !SegmentFits(offset, length, resume, final))
      ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                    "a hashed range must start at the tar's start without a state or at a 64-byte "
                    "boundary with one, and end at a 64-byte boundary unless final");
    // Uninitialized memory: the exporter overwrites all of it.
    auto out = std::shared_ptr<char>(new char[std::max<size_t>(length, 1)], std::default_delete<char[]>());
    auto hash = std::make_shared<std::array<uint8_t, Sha256::kStateSize>>();
    auto problem = std::make_shared<ExportProblem>();
    const uint8_t* from = resume ? state.Data() : nullptr;
    std::vector<Napi::Value> keep;
    if (resume) keep.push_back(state);
    return Run(
        env, problem, std::move(keep),
        [this, offset = offset, length = length, out, hash, problem, hashing, from, final] {
          if (!hashing) return exporter_.ReadRange(offset, length, out.get(), nullptr, *problem);
          Sha256 sha = StartSegment(from, offset);
          if (Failure f = exporter_.ReadRange(offset, length, out.get(), &sha, *problem)) return f;
          EndSegment(sha, final, hash->data());
          return Ok();
        },
        [out, length = length, hash, hashing](Napi::Env e) -> Napi::Value {
          Napi::Object result = Napi::Object::New(e);
          // The Buffer shares ownership of the memory.
          auto* owner = new std::shared_ptr<char>(out);
          result.Set("bytes", Napi::Buffer<char>::New(e, out.get(), length,
                                                      [](Napi::Env, char*, std::shared_ptr<char>* o) { delete o; },
                                                      owner));
          if (hashing) result.Set("hash", Napi::Buffer<uint8_t>::Copy(e, hash->data(), hash->size()));
          return result;
        });
  }

  // checkRange(offset, length): rejects with ERR_LAYER_CONTENT_CHANGED naming
  // a file with content in the range whose checksum no longer matches.
  Napi::Value CheckRange(const Napi::CallbackInfo& info) {
    auto [offset, length] = RangeArgs(info);
    auto problem = std::make_shared<ExportProblem>();
    return Run(
        info.Env(), problem, {},
        [this, offset = offset, length = length, problem] { return exporter_.CheckRange(offset, length, *problem); },
        nullptr);
  }

  // close(): releases the exporter's root fd; not while a call runs.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    ThrowIfBusy(info.Env(), calls_ > 0);
    exporter_.Close();
    return info.Env().Undefined();
  }

  TarExporter exporter_;
  unsigned calls_ = 0;
};

}  // namespace

void InitArchive(Napi::Env env, Napi::Object exports) {
  exports.Set("TarApplier", Applier::Define(env));
  exports.Set("TarExporter", Exporter::Define(env));
}

}  // namespace strata
