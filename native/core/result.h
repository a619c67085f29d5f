// How core functions report failure: which syscall failed, with what errno,
// on which paths. The binding turns a Failure into a Node-style error.
#pragma once
#include <string>

namespace strata {

struct Failure {
  int err = 0;              // positive errno; 0 means success
  const char* syscall = ""; // static string naming the failing call
  std::string path;
  std::string dest;

  explicit operator bool() const { return err != 0; }
};

inline Failure Ok() { return Failure{}; }

inline Failure Fail(int err, const char* syscall, std::string path = {},
                    std::string dest = {}) {
  return Failure{err, syscall, std::move(path), std::move(dest)};
}

// An owned file descriptor, closed on every path.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  ~Fd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace strata
