#include "areas.h"

namespace strata {

void InitLoop(Napi::Env, Napi::Object) {}

}  // namespace strata
