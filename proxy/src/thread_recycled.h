#pragma once

// Objects made and freed at the request rate on a worker thread (a request's stream, its filters)
// reuse the memory of freed objects of their type instead of calling malloc: a class derives from
// ThreadRecycled<Itself>, and its operator new/delete keep up to kMaxFree freed blocks in a list
// per thread (HAProxy's typed pools, without the sharing between threads). A block freed on
// another thread goes to that thread's list, which is fine: they all come from the global heap.
//
// Under AddressSanitizer nothing is kept, so that every object is really freed and a use after
// free is caught.

#include <cstddef>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define REMORA_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REMORA_UNDER_ASAN 1
#endif
#endif

namespace remora {

template <class T>
class ThreadRecycled {
 public:
#if defined(REMORA_UNDER_ASAN)
  static constexpr size_t kMaxFree = 0;
#else
  static constexpr size_t kMaxFree = 1024;
#endif

  static void* operator new(size_t size) {
    FreeList& f = free_;
    // A subclass of T of another size is not T's block: the size check keeps them apart.
    if (size == sizeof(T) && f.head != nullptr) {
      Block* b = f.head;
      f.head = b->next;
      --f.count;
      return b;
    }
    return ::operator new(size);
  }

  static void operator delete(void* p, size_t size) {
    FreeList& f = free_;
    if (size == sizeof(T) && f.count < kMaxFree) {
      auto* b = static_cast<Block*>(p);
      b->next = f.head;
      f.head = b;
      ++f.count;
      return;
    }
    ::operator delete(p);
  }

  // Blocks kept by the calling thread (for tests).
  static size_t freeBlocks() { return free_.count; }

 private:
  struct Block {
    Block* next;
  };
  struct FreeList {
    Block* head = nullptr;
    size_t count = 0;
    ~FreeList() {
      while (head != nullptr) {
        Block* b = head;
        head = b->next;
        ::operator delete(b);
      }
    }
  };
  static thread_local FreeList free_;
};

template <class T>
thread_local typename ThreadRecycled<T>::FreeList ThreadRecycled<T>::free_;

}  // namespace remora
