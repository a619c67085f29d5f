#include "areas.h"

namespace strata {

void InitFs(Napi::Env, Napi::Object) {}

}  // namespace strata
