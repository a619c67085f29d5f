// The C library's name and text for an errno value (ENOTBLK, EDQUOT... which
// libuv's table lacks).
#pragma once
#include <string>

namespace strata {

std::string ErrnoName(int err);
std::string ErrnoMessage(int err);

}  // namespace strata
