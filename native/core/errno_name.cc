#include "errno_name.h"

#include <string.h>

namespace strata {

std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name ? name : "E" + std::to_string(err);
}

std::string ErrnoMessage(int err) {
  char buf[256];
  // GNU strerror_r returns a pointer that may or may not be buf.
  const char* text = strerror_r(err, buf, sizeof buf);
  return text ? text : "unknown error";
}

}  // namespace strata
