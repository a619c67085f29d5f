#include "areas.h"

namespace strata {

void InitBtrfs(Napi::Env, Napi::Object) {}

}  // namespace strata
