#include "tar.h"
