#pragma once
// Adding to a counter that one thread writes and others only read: a worker's own statistics, its
// shard of a cluster's pick counts. A relaxed load and store instead of fetch_add: fetch_add is a
// locked read-modify-write, which on x86 also waits for every earlier store to leave the store
// buffer (~6 ns each on this VM, more right after a span was written to memory out of cache), and a
// request makes several. With a single writer nothing is lost, and a reader on another thread
// (/metrics) still sees each value whole, as it did.
#include <atomic>
#include <cstdint>

namespace sidetrace::upstream {

inline void addOwn(std::atomic<uint64_t>& counter, uint64_t n = 1) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace sidetrace::upstream
