#pragma once

// The deterministic body fake-upstream sends for `x-fake-body-size: N`. Shared with the integration
// harness so a test can rebuild the exact bytes it expects instead of trusting the server's own
// checksum header.

#include <cstddef>
#include <string>

namespace remora::fake {

// Byte i of every generated body. The alphabet length (61) is prime, so a body that was cut,
// shifted or had a block duplicated no longer matches the pattern at the same offsets.
inline char bodyPatternByte(size_t i) {
  static constexpr char kAlphabet[] =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY";
  return kAlphabet[i % (sizeof(kAlphabet) - 1)];
}

inline std::string bodyPattern(size_t n) {
  std::string s;
  s.resize(n);
  for (size_t i = 0; i < n; ++i) {
    s[i] = bodyPatternByte(i);
  }
  return s;
}

}  // namespace remora::fake
