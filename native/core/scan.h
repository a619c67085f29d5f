// Listing a directory tree with the lstat of every entry in one call: what a
// build context needs before it can tell which COPY sources changed. For a
// few thousand files one native pass costs a fraction of a readdir + lstat
// per file from JavaScript.
#pragma once
#include <sys/stat.h>

#include <string>
#include <vector>

#include "result.h"

namespace strata {

struct ScanEntry {
  std::string path;  // relative to the root, "/"-separated
  struct stat st;    // lstat: symlinks are listed, never followed
};

// Every entry below the directory `root`, each directory before what it
// holds, names in byte order within a directory.
Failure ScanTree(const std::string& root, std::vector<ScanEntry>& out);

}  // namespace strata
