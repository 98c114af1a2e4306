#pragma once
// A fixed-capacity byte buffer with a readable window [begin, end). Reads land after `end`;
// consumed bytes are dropped by moving `begin`; compaction happens only in prepare(), so views into
// consumed bytes stay valid until the next read is prepared (or the storage is released).
//
// The storage is taken on the first prepare(), from a BufferPool when one is given, and handed
// back by release() once nothing is buffered: connections that wait hold no storage.

#include <boost/asio/buffer.hpp>
#include <cstring>
#include <memory>

#include "proxy/buffer_pool.h"

namespace sidetrace::proxy {

class FlatBuffer {
 public:
  explicit FlatBuffer(size_t capacity, BufferPool* pool = nullptr)
      : capacity_(capacity), pool_(pool) {}
  ~FlatBuffer() {
    begin_ = end_;  // what is left is dropped; the storage goes back to the pool
    release();
  }
  FlatBuffer(const FlatBuffer&) = delete;
  FlatBuffer& operator=(const FlatBuffer&) = delete;

  const char* data() const { return data_.get() + begin_; }
  size_t size() const { return end_ - begin_; }
  bool holdsStorage() const { return data_ != nullptr; }
  void consume(size_t n) { begin_ += n; }
  boost::asio::mutable_buffer prepare() {
    if (!data_) {
      data_ = pool_ != nullptr ? pool_->take(capacity_)
                               : std::make_unique_for_overwrite<char[]>(capacity_);
    }
    if (begin_ == end_) {
      begin_ = end_ = 0;
    } else if (begin_ > 0) {
      std::memmove(data_.get(), data_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    return boost::asio::buffer(data_.get() + end_, capacity_ - end_);
  }
  void commit(size_t n) { end_ += n; }
  // For the next storage taken (a pooled buffer reused under a reloaded limits.buffer_bytes).
  void setCapacity(size_t capacity) {
    if (!data_) {
      capacity_ = capacity;
    }
  }
  // Gives the storage back when nothing is buffered (else keeps it); views into it end here.
  void release() {
    if (!data_ || begin_ != end_) {
      return;
    }
    begin_ = end_ = 0;
    if (pool_ != nullptr) {
      pool_->give(std::move(data_), capacity_);
    }
    data_.reset();
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t capacity_;
  BufferPool* pool_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace sidetrace::proxy
