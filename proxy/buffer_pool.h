#pragma once
// Read buffers shared by one worker's connections, as nginx and HAProxy share theirs: a
// connection takes one when bytes arrive and gives it back once it has nothing buffered, so an
// idle keep-alive connection holds none (limits.buffer_bytes would otherwise cost every open
// connection that much, written once so its pages are resident). Up to 64 returned buffers (two
// per busy HTTP/1 connection: client and upstream side) are kept for the next taker, so a busy
// worker does not go to the allocator per request; the rest are freed.
// Worker thread only; it must outlive every FlatBuffer that takes from it.

#include <cstddef>
#include <memory>
#include <vector>

namespace sidetrace::proxy {

class BufferPool {
 public:
  explicit BufferPool(size_t max_free = 64) : max_free_(max_free) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // Uninitialized storage of `capacity` bytes (not zero-filled: only what is read in is touched).
  std::unique_ptr<char[]> take(size_t capacity) {
    if (capacity == capacity_ && !free_.empty()) {
      auto buf = std::move(free_.back());
      free_.pop_back();
      return buf;
    }
    return std::make_unique_for_overwrite<char[]>(capacity);
  }
  // Buffers of another size than the kept ones (limits.buffer_bytes changed by a reload) replace
  // them: the old size is not asked for again.
  void give(std::unique_ptr<char[]> buf, size_t capacity) {
    if (capacity != capacity_) {
      free_.clear();
      capacity_ = capacity;
    }
    if (free_.size() < max_free_) {
      free_.push_back(std::move(buf));
    }
  }
  size_t freeCount() const { return free_.size(); }

 private:
  size_t max_free_;
  size_t capacity_ = 0;  // of the buffers in free_
  std::vector<std::unique_ptr<char[]>> free_;
};

}  // namespace sidetrace::proxy
