#include "btrfs.h"
