#include "areas.h"

namespace strata {

void InitMountApi(Napi::Env, Napi::Object) {}

}  // namespace strata
