// FlatBuffer takes storage only when a read is prepared and gives it back to the worker's
// BufferPool once nothing is buffered; the pool keeps a bounded number for reuse.

#include "proxy/flat_buffer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string_view>

namespace sidetrace::proxy {
namespace {

void put(FlatBuffer& b, std::string_view s) {
  auto m = b.prepare();
  ASSERT_GE(m.size(), s.size());
  std::memcpy(m.data(), s.data(), s.size());
  b.commit(s.size());
}

TEST(FlatBuffer, StorageOnlyWhileSomethingIsBuffered) {
  BufferPool pool;
  FlatBuffer b(64, &pool);
  EXPECT_FALSE(b.holdsStorage());
  EXPECT_EQ(b.size(), 0u);
  b.release();  // nothing to give back
  EXPECT_EQ(pool.freeCount(), 0u);

  put(b, "hello");
  EXPECT_TRUE(b.holdsStorage());
  b.consume(2);
  b.release();  // "llo" is still buffered: kept
  EXPECT_TRUE(b.holdsStorage());
  EXPECT_EQ(std::string_view(b.data(), b.size()), "llo");
  b.consume(3);
  b.release();
  EXPECT_FALSE(b.holdsStorage());
  EXPECT_EQ(pool.freeCount(), 1u);

  // The next read reuses the pooled buffer and starts empty.
  put(b, "again");
  EXPECT_EQ(pool.freeCount(), 0u);
  EXPECT_EQ(std::string_view(b.data(), b.size()), "again");
}

TEST(FlatBuffer, CompactsOnPrepare) {
  FlatBuffer b(8);  // no pool: its own storage, freed on release
  put(b, "abcdef");
  b.consume(4);
  EXPECT_EQ(b.prepare().size(), 6u);  // "ef" moved to the front
  EXPECT_EQ(std::string_view(b.data(), b.size()), "ef");
  b.consume(2);
  b.release();
  EXPECT_FALSE(b.holdsStorage());
}

TEST(FlatBuffer, DestructionReturnsStorageEvenWithBytesLeft) {
  BufferPool pool;
  {
    FlatBuffer b(64, &pool);
    put(b, "unread");
  }
  EXPECT_EQ(pool.freeCount(), 1u);
}

TEST(BufferPool, KeepsAtMostMaxFree) {
  BufferPool pool(2);
  for (int i = 0; i < 5; ++i) {
    pool.give(pool.take(32), 32);
  }
  EXPECT_EQ(pool.freeCount(), 1u);  // one taken and given back each time
  auto a = pool.take(32);
  auto b = pool.take(32);
  auto c = pool.take(32);
  pool.give(std::move(a), 32);
  pool.give(std::move(b), 32);
  pool.give(std::move(c), 32);
  EXPECT_EQ(pool.freeCount(), 2u);
}

TEST(BufferPool, AnotherSizeReplacesTheKeptOnes) {
  BufferPool pool;
  pool.give(pool.take(32), 32);
  pool.give(pool.take(32), 32);
  EXPECT_EQ(pool.freeCount(), 1u);
  pool.give(pool.take(64), 64);  // buffer_bytes changed by a reload
  EXPECT_EQ(pool.freeCount(), 1u);
  auto fresh = pool.take(32);  // not served from the 64-byte one
  EXPECT_EQ(pool.freeCount(), 1u);
}

}  // namespace
}  // namespace sidetrace::proxy
