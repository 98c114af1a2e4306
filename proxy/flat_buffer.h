#pragma once
// A fixed-capacity byte buffer with a readable window [begin, end). Reads land after `end`;
// consumed bytes are dropped by moving `begin`; compaction happens only in prepare(), so views into
// consumed bytes stay valid until the next read is prepared.

#include <boost/asio/buffer.hpp>
#include <cstring>
#include <vector>

namespace sidetrace::proxy {

class FlatBuffer {
 public:
  explicit FlatBuffer(size_t capacity) : data_(capacity) {}
  const char* data() const { return data_.data() + begin_; }
  size_t size() const { return end_ - begin_; }
  void consume(size_t n) { begin_ += n; }
  boost::asio::mutable_buffer prepare() {
    if (begin_ == end_) {
      begin_ = end_ = 0;
    } else if (begin_ > 0) {
      std::memmove(data_.data(), data_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    return boost::asio::buffer(data_.data() + end_, data_.size() - end_);
  }
  void commit(size_t n) { end_ += n; }

 private:
  std::vector<char> data_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace sidetrace::proxy
