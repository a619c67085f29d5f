#include "mount_api.h"
