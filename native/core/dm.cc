#include "dm.h"
