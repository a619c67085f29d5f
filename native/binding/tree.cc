#include "areas.h"

namespace strata {

void InitTree(Napi::Env, Napi::Object) {}

}  // namespace strata
