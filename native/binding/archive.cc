#include "areas.h"

namespace strata {

void InitArchive(Napi::Env, Napi::Object) {}

}  // namespace strata
