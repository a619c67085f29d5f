// btrfs subvolumes, snapshots and qgroups through the kernel's ioctls (no
// btrfs-progs at run time). Paths name subvolume roots unless said otherwise.
#pragma once
#include <cstdint>
#include <string>

#include "result.h"

namespace strata {

// A new, empty subvolume at `path` (its parent directory must exist).
Failure BtrfsCreateSubvolume(const std::string& path);

// A snapshot of the subvolume `source` at `dest`; EINVAL when `source` is a
// plain directory rather than a subvolume root.
Failure BtrfsSnapshot(const std::string& source, const std::string& dest,
                      bool read_only);

// Deletes the subvolume at `path` and, first, every subvolume nested inside
// it (read-only ones are made writable so their entries can go).
Failure BtrfsDestroySubvolume(const std::string& path);

// Whether `path` is the root directory of a btrfs subvolume (false, not an
// error, for anything else that exists).
Failure BtrfsIsSubvolume(const std::string& path, bool& is_subvolume);

// The id of the subvolume containing `path` (5 for the top level).
Failure BtrfsSubvolumeId(const std::string& path, uint64_t& id);

Failure BtrfsGetReadOnly(const std::string& path, bool& read_only);
Failure BtrfsSetReadOnly(const std::string& path, bool read_only);

// Commits the current transaction (qgroup numbers are updated at commits).
Failure BtrfsSync(const std::string& path);

// Turns quota accounting on or off for the filesystem holding `path`.
Failure BtrfsQuotaEnable(const std::string& path, bool enable);

// Creates the qgroup `qgroup_id` (level << 48 | id). Enabling quotas already
// made a level-0 qgroup for each subvolume; later subvolumes get one too.
Failure BtrfsQgroupCreate(const std::string& path, uint64_t qgroup_id);

// Limits the qgroup `qgroup_id` (0: the subvolume containing `path`). A
// limit of 0 removes that limit.
Failure BtrfsQgroupLimit(const std::string& path, uint64_t qgroup_id,
                         uint64_t max_referenced, uint64_t max_exclusive);

// Starts a quota rescan and, with `wait`, waits for it to finish.
Failure BtrfsQuotaRescan(const std::string& path, bool wait);

struct BtrfsUsage {
  uint64_t qgroup_id = 0;
  uint64_t referenced = 0;
  uint64_t exclusive = 0;
  uint64_t max_referenced = 0;  // 0: no limit
  uint64_t max_exclusive = 0;
};

// A qgroup's usage and limits from the quota tree (0: the subvolume
// containing `path`). ENOENT when quotas are off or the qgroup is missing.
Failure BtrfsGetQgroupUsage(const std::string& path, uint64_t qgroup_id,
                            BtrfsUsage& out);

}  // namespace strata
