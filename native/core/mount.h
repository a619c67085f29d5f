// Classic mount(2) and umount2(2).
#pragma once
#include <string>

#include "result.h"

namespace strata {

Failure Mount(const std::string& source, const std::string& target,
              const std::string& fstype, unsigned long flags,
              const std::string& data);

Failure Unmount(const std::string& target, int flags);

}  // namespace strata
