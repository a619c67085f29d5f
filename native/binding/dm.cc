#include "areas.h"

namespace strata {

void InitDm(Napi::Env, Napi::Object) {}

}  // namespace strata
