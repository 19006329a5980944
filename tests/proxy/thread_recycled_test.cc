#include "thread_recycled.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>

namespace remora {
namespace {

struct Base {
  virtual ~Base() = default;
};

struct Recycled : Base, ThreadRecycled<Recycled> {
  int value = 7;
};

// A subclass of another size must not take (or leave) Recycled-sized blocks.
struct Bigger : Recycled {
  char extra[256] = {};
};

TEST(ThreadRecycledTest, AFreedBlockServesTheNextObjectOfTheTypeOnThisThread) {
  std::unique_ptr<Base> a = std::make_unique<Recycled>();
  void* first = a.get();
  const size_t kept = Recycled::freeBlocks();
  a.reset();  // through the base's virtual destructor, as a StreamFilterPtr deletes
  if (Recycled::kMaxFree == 0) {
    GTEST_SKIP() << "AddressSanitizer build: blocks are freed, not kept";
  }
  EXPECT_EQ(Recycled::freeBlocks(), kept + 1);
  auto b = std::make_unique<Recycled>();
  EXPECT_EQ(static_cast<void*>(b.get()), first);
  EXPECT_EQ(b->value, 7);  // constructed afresh in the reused block
  EXPECT_EQ(Recycled::freeBlocks(), kept);
}

TEST(ThreadRecycledTest, ASubclassOfAnotherSizeIsNotKept) {
  const size_t kept = Recycled::freeBlocks();
  { auto big = std::make_unique<Bigger>(); }
  EXPECT_EQ(Recycled::freeBlocks(), kept);
}

TEST(ThreadRecycledTest, EachThreadHasItsOwnList) {
  { auto r = std::make_unique<Recycled>(); }
  const size_t here = Recycled::freeBlocks();
  size_t there = 99;
  std::thread t([&] { there = Recycled::freeBlocks(); });
  t.join();
  EXPECT_EQ(there, 0u);
  EXPECT_EQ(Recycled::freeBlocks(), here);
}

}  // namespace
}  // namespace remora
