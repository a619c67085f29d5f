// Mounting overlayfs with up to the kernel's 500 lower layers, and probing
// which overlay features the running kernel has.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "result.h"

namespace strata {

// The kernel's OVL_MAX_STACK (fs/overlayfs/params.h).
constexpr size_t kOverlayMaxLowers = 500;

// FSCONFIG_SET_STRING values are copied with strndup_user(value, 256): at most
// 255 bytes plus the NUL.
constexpr size_t kFsconfigMaxString = 255;

struct OverlaySpec {
  std::vector<std::string> lowers;  // absolute paths, top-most first
  std::string upper;                // absolute; empty with `work` for read-only
  std::string work;
  // Options in order: value "" sets a flag (volatile, userxattr).
  std::vector<std::pair<std::string, std::string>> options;
};

enum class OverlayMethod {
  kAuto,         // lowerdir+ where the kernel has it, else legacy
  kLowerdirPlus, // fsopen + one fsconfig per layer (Linux 6.8+)
  kLegacy,       // mount(2) with one option string of at most a page
};

struct OverlayMounted {
  OverlayMethod method = OverlayMethod::kAuto;
  // Layers named by an fd rather than a path: lowerdir+ paths longer than
  // 255 bytes (SET_FD, 6.13+), or all lowers when the legacy string would
  // not fit a page with full paths (then "lowerdir=12:13:..." is resolved in
  // /proc/self/fd by a short-lived thread with its own cwd).
  size_t layers_by_fd = 0;
};

// Checks the spec (count, absolute paths, upper/work pairing, option syntax);
// returns an empty string or the reason it is invalid.
std::string OverlaySpecError(const OverlaySpec& spec);

Failure MountOverlay(const OverlaySpec& spec, const std::string& target,
                     OverlayMethod method, OverlayMounted& mounted,
                     std::string& kernel_log);

struct OverlayFeatures {
  bool available = false;       // fsopen("overlay") works
  bool params_checked = false;  // the kernel validates each option (6.5+)
  bool lowerdir_plus = false;   // fsconfig "lowerdir+" (6.8+)
  bool datadir_plus = false;    // fsconfig "datadir+" (6.8+)
  bool layers_by_fd = false;    // FSCONFIG_SET_FD for layers (6.13+)
  bool metacopy = false;
  bool index = false;
  bool redirect_dir = false;
  bool volatile_ = false;
  bool userxattr = false;
  // /sys/module/overlay/parameters/*: name and trimmed value.
  std::vector<std::pair<std::string, std::string>> module_params;
};

// Probed once per process; later calls return the cached result.
const OverlayFeatures& ProbeOverlayFeatures();

// How many lower layers one overlay can stack: counted once per process
// where "lowerdir+" exists (some 500 fsconfig calls, so apart from the
// probe every command makes), else the kernel's 500.
size_t OverlayMaxLowers();

}  // namespace strata
