// tileflash: exact, IO-aware attention. Umbrella header.
#pragma once

#include "tileflash/attention.h"
#include "tileflash/error.h"
#include "tileflash/params.h"
#include "tileflash/tensor.h"
#include "tileflash/version.h"
