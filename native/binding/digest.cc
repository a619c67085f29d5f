// SHA-256 with checkpoints (core/digest_chain.h): DigestChain hashes a layer
// tar as it is imported, on the calling thread; hashSegment re-hashes one
// segment of it on the libuv pool, so an export verifies several at once.
#include <array>
#include <memory>

#include "../core/digest_chain.h"
#include "areas.h"
#include "common.h"

namespace strata {
namespace {

Napi::Buffer<uint8_t> CopyBuffer(Napi::Env env, const std::string& bytes) {
  return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(bytes.data()),
                                     bytes.size());
}

class DigestChain : public Napi::ObjectWrap<DigestChain> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "DigestChain", {InstanceMethod("update", &DigestChain::Update),
                                            InstanceMethod("finish", &DigestChain::Finish)});
  }

  explicit DigestChain(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DigestChain>(info) {}

 private:
  // update(chunk): synchronous, as crypto's Hash.update.
  Napi::Value Update(const Napi::CallbackInfo& info) {
    Napi::Buffer<uint8_t> chunk = BufferArg(info, 0, "chunk");
    if (finished_) ThrowArgError(info.Env(), "ERR_INVALID_STATE", "the digest chain is finished");
    chain_.Update(chunk.Data(), chunk.Length());
    return info.Env().Undefined();
  }

  // finish(): { digest: 'sha256:<hex>', checkpoints: Buffer }.
  Napi::Value Finish(const Napi::CallbackInfo& info) {
    if (finished_) ThrowArgError(info.Env(), "ERR_INVALID_STATE", "the digest chain is finished");
    finished_ = true;
    std::string digest, checkpoints;
    chain_.Finish(digest, checkpoints);
    Napi::Object result = Napi::Object::New(info.Env());
    result.Set("digest", Napi::String::New(info.Env(), digest));
    result.Set("checkpoints", CopyBuffer(info.Env(), checkpoints));
    return result;
  }

  DigestChainBuilder chain_;
  bool finished_ = false;
};

// hashSegment(data, state | null, bytesBefore, final): resolves the 32-byte
// end state, or with `final` the digest.
Napi::Value HashSegmentCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> data = BufferArg(info, 0, "data");
  bool resume = !info[1].IsNull();
  Napi::Buffer<uint8_t> state = resume ? BufferArg(info, 1, "state") : Napi::Buffer<uint8_t>();
  if (resume && state.Length() != Sha256::kStateSize)
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE", "The \"state\" argument must be 32 bytes");
  uint64_t before = static_cast<uint64_t>(IntegerArg(info, 2, "bytesBefore", 0, int64_t{1} << 53));
  bool final = BoolArg(info, 3, "final");
  if (!SegmentFits(before, data.Length(), resume, final))
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE",
                  "a segment must start at the stream's start or a 64-byte boundary with its state, "
                  "and end at a 64-byte boundary unless final");
  auto out = std::make_shared<std::array<uint8_t, Sha256::kStateSize>>();
  const uint8_t* bytes = data.Data();
  size_t size = data.Length();
  const uint8_t* from = resume ? state.Data() : nullptr;
  return RunAsync(
      env, "strata.hashSegment",
      [=] {
        HashSegment(bytes, size, from, before, final, out->data());
        return Ok();
      },
      [out](Napi::Env e) -> Napi::Value { return Napi::Buffer<uint8_t>::Copy(e, out->data(), out->size()); },
      {{data, resume ? Napi::Value(state) : env.Null()}, nullptr, nullptr});
}

}  // namespace

void InitDigest(Napi::Env env, Napi::Object exports) {
  exports.Set("DigestChain", DigestChain::Define(env));
  exports.Set("hashSegment", Napi::Function::New(env, HashSegmentCall, "hashSegment"));
}

}  // namespace strata
