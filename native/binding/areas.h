// One Init function per native area; addon.cc calls them all.
#pragma once
#include <napi.h>

namespace strata {

void InitMount(Napi::Env env, Napi::Object exports);     // mount(2), umount2
void InitMountApi(Napi::Env env, Napi::Object exports);  // fsopen ... mount_setattr
void InitOverlay(Napi::Env env, Napi::Object exports);   // overlay mount helper
void InitFs(Napi::Env env, Napi::Object exports);        // xattrs, mknod, statfs
void InitClone(Napi::Env env, Napi::Object exports);     // FICLONE, copy_file_range
void InitLoop(Napi::Env env, Napi::Object exports);      // loop devices
void InitArchive(Napi::Env env, Napi::Object exports);   // tar apply
void InitDigest(Napi::Env env, Napi::Object exports);    // SHA-256 with checkpoints
void InitTree(Napi::Env env, Napi::Object exports);      // parallel tree copy
void InitBtrfs(Napi::Env env, Napi::Object exports);     // btrfs subvolume ioctls
void InitDm(Napi::Env env, Napi::Object exports);        // device-mapper ioctls
void InitResolve(Napi::Env env, Napi::Object exports);   // opening paths inside a tree

}  // namespace strata
