#include "overlay.h"
