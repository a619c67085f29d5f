#include "areas.h"

namespace strata {

void InitClone(Napi::Env, Napi::Object) {}

}  // namespace strata
