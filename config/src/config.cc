#include "remora/config/config.h"
