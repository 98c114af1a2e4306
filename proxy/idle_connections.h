#pragma once
// The idle keep-alive connections of one worker, each due to close limits.idle_timeout after it
// went idle, under one timer for them all (nginx keeps one timer tree per worker, not a timer per
// connection): an idle connection holds no timer, no pending timer wait and no timer state, only
// the links of its IdleEntry.
//
// Connections enter in the order they go idle. With one timeout value that is also the order in
// which they fall due, so add() appends, remove() unlinks, and expire() looks only at the head:
// all O(1) per connection. There is one list per timeout value in use, each in due order (HTTP/1
// sessions use two: the short warm wait of a connection that was just busy and
// limits.idle_timeout; a reload that changes them adds others). Lists are kept
// when empty, so the ones in use are not made again and again; past kKeptLists, a new timeout
// value drops the empty ones.
//
// Pure bookkeeping, worker thread only: the worker owns the timer and arms it at nextDue().
// Declared before the worker's io_context, so sessions that its destruction frees can still
// unlink themselves.

#include <chrono>
#include <memory>
#include <vector>

namespace sidetrace::proxy {

class IdleConnections;

// Two pointers of a circular list: a list's sentinel, or the base of an IdleEntry.
struct IdleLink {
  IdleLink* prev = nullptr;
  IdleLink* next = nullptr;
};

// What IdleConnections links; a connection derives from it. Not in a list at first; unlinks
// itself when destroyed.
class IdleEntry : private IdleLink {
 public:
  IdleEntry() = default;
  IdleEntry(const IdleEntry&) = delete;
  IdleEntry& operator=(const IdleEntry&) = delete;
  bool idleListed() const { return next != nullptr; }
  // Called by IdleConnections::expire() once its time is up, after it was unlinked.
  virtual void idleExpired() = 0;

 protected:
  ~IdleEntry() { unlink(); }

 private:
  friend class IdleConnections;
  void unlink() {
    if (next != nullptr) {
      prev->next = next;
      next->prev = prev;
      prev = next = nullptr;
    }
  }

  std::chrono::steady_clock::time_point due_;
};

class IdleConnections {
 public:
  using Clock = std::chrono::steady_clock;
  IdleConnections() = default;
  IdleConnections(const IdleConnections&) = delete;
  IdleConnections& operator=(const IdleConnections&) = delete;
  ~IdleConnections();  // entries still listed are unlinked

  // `e` (not listed) falls due `timeout` after `now`. True when it is now the earliest due of all
  // (the timer must be moved to it).
  bool add(IdleEntry& e, std::chrono::milliseconds timeout, Clock::time_point now);
  // No-op when `e` is not listed (expired, or never added).
  static void remove(IdleEntry& e) { e.unlink(); }
  // Unlinks every entry due by `now` and calls its idleExpired(), in due order per list.
  void expire(Clock::time_point now);
  // The earliest due listed; Clock::time_point::max() when none.
  Clock::time_point nextDue() const;

 private:
  struct List {
    std::chrono::milliseconds timeout;
    IdleLink head;  // sentinel of a circular list; head.next is the earliest due
    bool empty() const { return head.next == &head; }
  };
  static constexpr size_t kKeptLists = 8;
  static IdleEntry* entry(IdleLink* l) { return static_cast<IdleEntry*>(l); }  // never a head
  std::vector<std::unique_ptr<List>> lists_;  // unique_ptr: the sentinels must not move
};

}  // namespace sidetrace::proxy
