#pragma once
// Structured reads from a fuzz input, for targets that need more than one value (a split point,
// a flag, a string). Built by the libFuzzer targets and by the g++ replay test alike, so it cannot
// use clang's FuzzedDataProvider. Reads past the end yield zeros and empty strings: every input
// is a valid sequence of values, and a short one simply ends early.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace sidetrace::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return size_ - pos_; }

  uint8_t byte() { return pos_ < size_ ? static_cast<uint8_t>(data_[pos_++]) : 0; }
  bool flag() { return (byte() & 1) != 0; }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v = (v << 8) | byte();
    }
    return v;
  }
  // A string up to the next '\n' (not included), or to the end; at most max_len bytes of it are
  // kept, the rest of the line is skipped. Lines keep the corpus human-readable.
  std::string_view line(size_t max_len = SIZE_MAX) {
    const size_t begin = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') {
      ++pos_;
    }
    std::string_view s(data_ + begin, std::min(pos_ - begin, max_len));
    if (pos_ < size_) {
      ++pos_;  // the '\n'
    }
    return s;
  }
  // Everything not read yet.
  std::string_view rest() {
    std::string_view s(data_ + std::min(pos_, size_), remaining());
    pos_ = size_;
    return s;
  }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Read sizes from a seed: mostly small (split points everywhere, also inside CRLF and chunk
// sizes), sometimes large.
class ReadSizes {
 public:
  explicit ReadSizes(uint64_t seed) : state_(seed | 1) {}
  size_t operator()() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const uint64_t r = state_ * 0x2545F4914F6CDD1DULL;
    return (r & 3) == 0 ? 1 + (r >> 8) % 4096 : 1 + (r >> 8) % 7;
  }

 private:
  uint64_t state_;
};

// A broken property: print what differs and abort, so libFuzzer saves the input as a crash and
// the replay test fails.
[[noreturn]] inline void violated(const char* what, std::string_view a = {},
                                  std::string_view b = {}) {
  std::fprintf(stderr, "fuzz property violated: %s\n  a: %.*s\n  b: %.*s\n", what,
               static_cast<int>(std::min<size_t>(a.size(), 2000)), a.data(),
               static_cast<int>(std::min<size_t>(b.size(), 2000)), b.data());
  std::abort();
}

inline void check(bool ok, const char* what, std::string_view a = {}, std::string_view b = {}) {
  if (!ok) {
    violated(what, a, b);
  }
}

}  // namespace sidetrace::fuzz
