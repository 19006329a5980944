#include <gtest/gtest.h>

#include <string>

#include "worker.h"

namespace remora {
namespace {

TEST(RequestIdTest, UuidVersion4Layout) {
  std::string id;
  formatRequestId(0x0123456789abcdefULL, 0xfedcba9876543210ULL, id);
  // The version nibble (13th hex digit) becomes 4, the variant's two bits 10 (17th digit 8-b).
  EXPECT_EQ(id, "01234567-89ab-4def-bedc-ba9876543210");
  formatRequestId(0, 0, id);
  EXPECT_EQ(id, "00000000-0000-4000-8000-000000000000");
  formatRequestId(~0ULL, ~0ULL, id);
  EXPECT_EQ(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
}

TEST(RequestIdTest, ReusesTheCallersBuffer) {
  std::string id(100, 'x');
  const char* data = id.data();
  formatRequestId(1, 2, id);
  EXPECT_EQ(id.size(), 36u);
  EXPECT_EQ(id.data(), data) << "the id was written into new memory";
}

}  // namespace
}  // namespace remora
