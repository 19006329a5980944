#pragma once

// Counts heap allocations made through operator new (the proxy's C++ code; OpenSSL and libuv
// allocate with malloc and are not counted). Thread-local, so a benchmark counts only its own.

#include <cstdint>

namespace remora::micro {

uint64_t allocationCount();

}  // namespace remora::micro
