// Grow-only per-thread scratch slots (scratch.h). Growth rounds up by 1/4 so a slowly
// growing sequence of requests does not reallocate every time.
#include "fastq/scratch.h"

#include <cstdlib>
#include <memory>
#include <new>

namespace fastq {
namespace {

struct Slot {
  void* p = nullptr;
  size_t size = 0;
  ~Slot() { std::free(p); }
};

thread_local Slot g_slots[static_cast<int>(Scratch::kCount)];

}  // namespace

void* scratch(Scratch slot, size_t bytes) {
  Slot& s = g_slots[static_cast<int>(slot)];
  if (bytes > s.size) {
    std::free(s.p);
    size_t want = bytes + bytes / 4;
    want = (want + 63) / 64 * 64;
    s.p = std::aligned_alloc(64, want);
    if (!s.p) {
      s.size = 0;
      throw std::bad_alloc();
    }
    s.size = want;
  }
  return s.p;
}

}  // namespace fastq
