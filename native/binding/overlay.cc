#include "areas.h"

namespace strata {

void InitOverlay(Napi::Env, Napi::Object) {}

}  // namespace strata
