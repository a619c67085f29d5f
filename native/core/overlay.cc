#include "overlay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <system_error>
#include <thread>

#include "mount_api.h"

namespace strata {
namespace {

bool IsLayerKey(const std::string& key) {
  return key == "lowerdir" || key == "lowerdir+" || key == "datadir+" ||
         key == "upperdir" || key == "workdir";
}

// A backslash before what overlay's option parser splits on (',' between
// options, ':' between lowers) and before itself; the kernel removes them.
std::string Escape(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == '\\' || c == ':' || c == ',') out += '\\';
    out += c;
  }
  return out;
}

// One layer for the fs context: by path when it fits fsconfig's string limit,
// else by an O_PATH fd (the kernel accepts fds for layers since 6.13).
// "lowerdir+" takes its string literally, but the kernel unescapes
// "upperdir" and "workdir" as in legacy options, so those are escaped.
Failure AddLayer(int context, const char* key, const std::string& path,
                 bool escaped, OverlayMounted& mounted,
                 std::string& kernel_log) {
  std::string value = escaped ? Escape(path) : path;
  Failure failure;
  if (value.size() <= kFsconfigMaxString) {
    failure = FsConfig(context, FSCONFIG_SET_STRING, key, value.c_str(), 0,
                       kernel_log);
  } else {
    Fd dir(open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir.valid()) return Fail(errno, "open", path);
    failure = FsConfig(context, FSCONFIG_SET_FD, key, nullptr, dir.get(),
                       kernel_log);
    mounted.layers_by_fd++;
  }
  if (failure) failure.dest = path;
  return failure;
}

Failure MountWithLowerdirPlus(const OverlaySpec& spec,
                              const std::string& target,
                              OverlayMounted& mounted,
                              std::string& kernel_log) {
  mounted.method = OverlayMethod::kLowerdirPlus;
  Fd context;
  if (Failure f = FsOpen("overlay", context)) return f;
  int c = context.get();
  for (const std::string& lower : spec.lowers)
    if (Failure f = AddLayer(c, "lowerdir+", lower, false, mounted, kernel_log))
      return f;
  if (!spec.upper.empty()) {
    if (Failure f = AddLayer(c, "upperdir", spec.upper, true, mounted,
                             kernel_log))
      return f;
    if (Failure f = AddLayer(c, "workdir", spec.work, true, mounted,
                             kernel_log))
      return f;
  }
  for (const auto& [key, value] : spec.options) {
    Failure f = value.empty() ? FsConfig(c, FSCONFIG_SET_FLAG, key.c_str(),
                                         nullptr, 0, kernel_log)
                              : FsConfig(c, FSCONFIG_SET_STRING, key.c_str(),
                                         value.c_str(), 0, kernel_log);
    if (f) return f;
  }
  if (Failure f =
          FsConfig(c, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0, kernel_log))
    return f;
  Fd mount;
  if (Failure f = FsMount(c, 0, mount, kernel_log)) return f;
  return MoveMount(mount.get(), "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
}

std::string LegacyData(const std::vector<std::string>& lowers,
                       const OverlaySpec& spec) {
  std::string data = "lowerdir=";
  for (size_t i = 0; i < lowers.size(); i++) {
    if (i > 0) data += ':';
    data += lowers[i];
  }
  if (!spec.upper.empty())
    data += ",upperdir=" + Escape(spec.upper) + ",workdir=" + Escape(spec.work);
  for (const auto& [key, value] : spec.options)
    data += "," + key + (value.empty() ? "" : "=" + value);
  return data;
}

// mount(2) copies one page of option data and cuts it there without an error,
// which would silently drop the last layers: refuse what does not fit.
bool FitsPage(const std::string& data) {
  return data.size() + 1 <= static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Mounts with lowers named relative to /proc/self/fd. The cwd belongs to the
// process, so a throwaway thread unshares it (CLONE_FS) first; no pool thread
// keeps a changed cwd.
Failure MountFromProcFd(const std::string& data, const std::string& target) {
  Failure result;
  try {
    std::thread worker([&] {
      if (unshare(CLONE_FS) != 0) {
        result = Fail(errno, "unshare");
      } else if (chdir("/proc/self/fd") != 0) {
        result = Fail(errno, "chdir", "/proc/self/fd");
      } else if (mount("overlay", target.c_str(), "overlay", 0,
                       data.c_str()) != 0) {
        result = Fail(errno, "mount", "overlay", target);
      }
    });
    worker.join();
  } catch (const std::system_error& e) {
    return Fail(e.code().value(), "pthread_create");
  }
  return result;
}

Failure MountLegacy(const OverlaySpec& spec, const std::string& target,
                    OverlayMounted& mounted) {
  mounted.method = OverlayMethod::kLegacy;
  std::vector<std::string> lowers;
  for (const std::string& lower : spec.lowers) lowers.push_back(Escape(lower));
  std::string data = LegacyData(lowers, spec);
  if (FitsPage(data)) {
    if (mount("overlay", target.c_str(), "overlay", 0, data.c_str()) != 0)
      return Fail(errno, "mount", "overlay", target);
    return Ok();
  }
  // A few bytes per layer instead of a full path.
  std::vector<Fd> dirs;
  lowers.clear();
  for (const std::string& lower : spec.lowers) {
    Fd dir(open(lower.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir.valid()) return Fail(errno, "open", lower);
    lowers.push_back(std::to_string(dir.get()));
    dirs.push_back(std::move(dir));
  }
  data = LegacyData(lowers, spec);
  if (!FitsPage(data)) return Fail(E2BIG, "mount", "overlay", target);
  mounted.layers_by_fd = dirs.size();
  return MountFromProcFd(data, target);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::vector<std::pair<std::string, std::string>> ReadModuleParams() {
  const std::string dir = "/sys/module/overlay/parameters";
  std::vector<std::pair<std::string, std::string>> params;
  DIR* d = opendir(dir.c_str());
  if (!d) return params;
  while (struct dirent* entry = readdir(d)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    std::ifstream file(dir + "/" + name);
    std::string value((std::istreambuf_iterator<char>(file)),
                      std::istreambuf_iterator<char>());
    params.emplace_back(name, Trim(value));
  }
  closedir(d);
  std::sort(params.begin(), params.end());
  return params;
}

bool Accepts(int context, unsigned cmd, const char* key, const char* value,
             int aux) {
  std::string ignored;
  return !FsConfig(context, cmd, key, value, aux, ignored);
}

// How many "lowerdir+" layers one context takes (the kernel's stack limit).
size_t CountMaxLowers() {
  Fd context;
  if (FsOpen("overlay", context)) return kOverlayMaxLowers;
  size_t n = 0;
  while (n < 4 * kOverlayMaxLowers &&
         Accepts(context.get(), FSCONFIG_SET_STRING, "lowerdir+", "/", 0))
    n++;
  return n;
}

OverlayFeatures Probe() {
  OverlayFeatures f;
  Fd context;
  f.available = !FsOpen("overlay", context);  // loads the module if needed
  f.module_params = ReadModuleParams();
  if (!f.available) return f;
  int c = context.get();
  // Before 6.5 overlay had no fs_context of its own: the generic one accepts
  // any key, so only the module parameters tell which options exist.
  f.params_checked =
      !Accepts(c, FSCONFIG_SET_STRING, "strata-no-such-option", "x", 0);
  if (!f.params_checked) {
    for (const auto& [name, value] : f.module_params) {
      f.index = f.index || name == "index";
      f.metacopy = f.metacopy || name == "metacopy";
      f.redirect_dir = f.redirect_dir || name == "redirect_dir";
    }
    return f;
  }
  f.lowerdir_plus = Accepts(c, FSCONFIG_SET_STRING, "lowerdir+", "/", 0);
  Fd root(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  f.layers_by_fd =
      f.lowerdir_plus && root.valid() &&
      Accepts(c, FSCONFIG_SET_FD, "lowerdir+", nullptr, root.get());
  // Data layers must come after every regular lower layer.
  f.datadir_plus = Accepts(c, FSCONFIG_SET_STRING, "datadir+", "/", 0);
  f.metacopy = Accepts(c, FSCONFIG_SET_STRING, "metacopy", "off", 0);
  f.index = Accepts(c, FSCONFIG_SET_STRING, "index", "off", 0);
  f.redirect_dir = Accepts(c, FSCONFIG_SET_STRING, "redirect_dir", "off", 0);
  f.volatile_ = Accepts(c, FSCONFIG_SET_FLAG, "volatile", nullptr, 0);
  f.userxattr = Accepts(c, FSCONFIG_SET_FLAG, "userxattr", nullptr, 0);
  return f;
}

}  // namespace

std::string OverlaySpecError(const OverlaySpec& spec) {
  if (spec.lowers.empty()) return "an overlay needs at least one lower dir";
  if (spec.lowers.size() > kOverlayMaxLowers)
    return "an overlay takes at most " + std::to_string(kOverlayMaxLowers) +
           " lower dirs, got " + std::to_string(spec.lowers.size());
  if (spec.upper.empty() != spec.work.empty())
    return "upper and work dirs must be given together";
  if (spec.upper.empty() && spec.lowers.size() < 2)
    return "an overlay without an upper dir needs at least 2 lower dirs "
           "(the kernel refuses one)";
  std::vector<std::string> paths = spec.lowers;
  if (!spec.upper.empty()) {
    paths.push_back(spec.upper);
    paths.push_back(spec.work);
  }
  for (const std::string& path : paths)
    if (path.empty() || path[0] != '/')
      return "overlay dirs must be absolute paths: '" + path + "'";
  for (const auto& [key, value] : spec.options) {
    if (key.empty() || key.find_first_of(",=") != std::string::npos)
      return "bad overlay option name '" + key + "'";
    if (IsLayerKey(key))
      return "overlay option '" + key + "' is set from the layer arguments";
    if (value.find(',') != std::string::npos)
      return "overlay option '" + key + "' has a ',' in its value";
  }
  return {};
}

Failure MountOverlay(const OverlaySpec& spec, const std::string& target,
                     OverlayMethod method, OverlayMounted& mounted,
                     std::string& kernel_log) {
  if (method == OverlayMethod::kAuto) {
    const OverlayFeatures& features = ProbeOverlayFeatures();
    bool long_path = false;
    for (const std::string& lower : spec.lowers)
      long_path = long_path || lower.size() > kFsconfigMaxString;
    long_path = long_path ||
                Escape(spec.upper).size() > kFsconfigMaxString ||
                Escape(spec.work).size() > kFsconfigMaxString;
    bool plus = features.lowerdir_plus && (features.layers_by_fd || !long_path);
    method = plus ? OverlayMethod::kLowerdirPlus : OverlayMethod::kLegacy;
  }
  if (method == OverlayMethod::kLowerdirPlus)
    return MountWithLowerdirPlus(spec, target, mounted, kernel_log);
  return MountLegacy(spec, target, mounted);
}

const OverlayFeatures& ProbeOverlayFeatures() {
  static const OverlayFeatures features = Probe();
  return features;
}

size_t OverlayMaxLowers() {
  static const size_t max_lowers =
      ProbeOverlayFeatures().lowerdir_plus ? CountMaxLowers() : kOverlayMaxLowers;
  return max_lowers;
}

}  // namespace strata
