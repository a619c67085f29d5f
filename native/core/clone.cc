#include "clone.h"
