// LD_PRELOAD shim for linux.uml (scripts/vm-run): lets a UML kernel that
// predates dynamic XSAVE sizes restore FPU state on hosts whose XSAVE area is
// larger than the one it knows (AMX: about 11 KiB instead of 2.7 KiB).
//
// UML reads a guest process's registers with PTRACE_GETREGSET NT_X86_XSTATE
// into a buffer of its own size (the kernel truncates, fine) and writes them
// back with PTRACE_SETREGSET, which the host kernel only accepts for exactly
// its full XSAVE size: EFAULT otherwise, and the guest's init dies. Here a
// short write is completed: the task's current full state is read, UML's
// bytes are laid over its start, and the whole area is written. The features
// past UML's size (AMX tiles) are ones guest processes cannot enable, so
// their state stays as the host has it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(enum __ptrace_request, pid_t, void*, void*);

// Static, not malloc'd or on the stack: UML calls ptrace from its kernel
// context, with small stacks and its own allocator, one call at a time.
static unsigned char full_state[64 * 1024];

static long set_xstate(ptrace_fn real, pid_t pid, struct iovec* uml) {
  struct iovec full = {full_state, sizeof full_state};
  long result = real(PTRACE_GETREGSET, pid, (void*)NT_X86_XSTATE, &full);
  if (result != 0 || uml->iov_len >= full.iov_len)
    return real(PTRACE_SETREGSET, pid, (void*)NT_X86_XSTATE, uml);
  memcpy(full_state, uml->iov_base, uml->iov_len);
  return real(PTRACE_SETREGSET, pid, (void*)NT_X86_XSTATE, &full);
}

long ptrace(enum __ptrace_request request, ...) {
  static ptrace_fn real;
  if (!real) real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");

  va_list args;
  va_start(args, request);
  pid_t pid = va_arg(args, pid_t);
  void* addr = va_arg(args, void*);
  void* data = va_arg(args, void*);
  va_end(args);

  if (request == PTRACE_SETREGSET && (long)addr == NT_X86_XSTATE)
    return set_xstate(real, pid, (struct iovec*)data);
  return real(request, pid, addr, data);
}
