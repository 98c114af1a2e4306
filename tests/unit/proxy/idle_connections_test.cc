// IdleConnections: a worker's idle keep-alive connections under one timer. What must hold: an
// entry expires once, not before its due time (when it went idle plus the timeout in force then),
// never after it left the list; the timer's next due is the earliest of all; a reload's second
// timeout value keeps each connection's own due time; a connection freed while listed unlinks
// itself.

#include "proxy/idle_connections.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace sidetrace::proxy {
namespace {

using std::chrono::milliseconds;
using Clock = IdleConnections::Clock;

struct FakeConnection final : IdleEntry {
  FakeConnection(std::string n, std::vector<std::string>& log) : name(std::move(n)), log(log) {}
  void idleExpired() override { log.push_back(name); }
  std::string name;
  std::vector<std::string>& log;
};

TEST(IdleConnections, ExpiresWhatIsDueInOrderAndNothingThatLeft) {
  std::vector<std::string> expired;
  IdleConnections idle;
  FakeConnection a("a", expired), b("b", expired), c("c", expired);
  const Clock::time_point t0{};
  EXPECT_EQ(idle.nextDue(), Clock::time_point::max());
  EXPECT_TRUE(idle.add(a, milliseconds(1000), t0)) << "the first entry is the earliest due";
  EXPECT_FALSE(idle.add(b, milliseconds(1000), t0 + milliseconds(10)));
  EXPECT_FALSE(idle.add(c, milliseconds(1000), t0 + milliseconds(20)));
  EXPECT_EQ(idle.nextDue(), t0 + milliseconds(1000));

  idle.expire(t0 + milliseconds(999));
  EXPECT_TRUE(expired.empty()) << "expired before its due time";

  IdleConnections::remove(a);  // a request arrived on it
  EXPECT_FALSE(a.idleListed());
  EXPECT_EQ(idle.nextDue(), t0 + milliseconds(1010));
  idle.expire(t0 + milliseconds(1015));
  EXPECT_EQ(expired, std::vector<std::string>{"b"});
  EXPECT_FALSE(b.idleListed());
  EXPECT_TRUE(c.idleListed());

  // Idle again later: due from the new time, behind c.
  idle.add(a, milliseconds(1000), t0 + milliseconds(1500));
  idle.expire(t0 + milliseconds(5000));
  EXPECT_EQ(expired, (std::vector<std::string>{"b", "c", "a"}));
  EXPECT_EQ(idle.nextDue(), Clock::time_point::max());
  idle.expire(t0 + milliseconds(9000));
  EXPECT_EQ(expired.size(), 3u) << "an entry expired twice";
}

// After a reload shortens limits.idle_timeout, a connection that goes idle later may fall due
// before the ones already waiting: it must not wait behind them, and they keep their own time.
TEST(IdleConnections, EveryConnectionKeepsTheTimeoutInForceWhenItWentIdle) {
  std::vector<std::string> expired;
  IdleConnections idle;
  FakeConnection old_timeout("old", expired), new_timeout("new", expired);
  const Clock::time_point t0{};
  idle.add(old_timeout, milliseconds(60000), t0);
  EXPECT_TRUE(idle.add(new_timeout, milliseconds(100), t0 + milliseconds(10)))
      << "the timer was not moved to the earlier due";
  EXPECT_EQ(idle.nextDue(), t0 + milliseconds(110));
  idle.expire(t0 + milliseconds(200));
  EXPECT_EQ(expired, std::vector<std::string>{"new"});
  EXPECT_EQ(idle.nextDue(), t0 + milliseconds(60000));
  idle.expire(t0 + milliseconds(60000));
  EXPECT_EQ(expired, (std::vector<std::string>{"new", "old"}));
}

TEST(IdleConnections, AFreedConnectionLeavesTheListAndTheListReleasesTheRest) {
  std::vector<std::string> expired;
  auto idle = std::make_unique<IdleConnections>();
  auto gone = std::make_unique<FakeConnection>("gone", expired);
  FakeConnection kept("kept", expired);
  const Clock::time_point t0{};
  idle->add(*gone, milliseconds(100), t0);
  idle->add(kept, milliseconds(100), t0 + milliseconds(1));
  gone.reset();  // its session was destroyed while idle (e.g. by the io_context going away)
  EXPECT_EQ(idle->nextDue(), t0 + milliseconds(101));
  idle.reset();  // the worker goes first: kept must not point into it any more
  EXPECT_FALSE(kept.idleListed());
  EXPECT_TRUE(expired.empty());
}

}  // namespace
}  // namespace sidetrace::proxy
