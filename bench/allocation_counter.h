// Counts the bytes a CPU operation allocates through C++ operator new (std::vector,
// make_unique, ...), so tileflash-bench can report its peak working memory. The
// counting operators replace the global ones for the whole benchmark binary.
// Memory taken with malloc directly or thread stacks is not seen.
#pragma once

#include <cstdint>

namespace tileflash::bench::allocation_counter {

std::int64_t live_bytes();
// Sets the high-water mark to the bytes live now.
void reset_peak();
std::int64_t peak_bytes();

}  // namespace tileflash::bench::allocation_counter
