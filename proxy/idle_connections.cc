#include "proxy/idle_connections.h"

namespace sidetrace::proxy {

IdleConnections::~IdleConnections() {
  for (auto& list : lists_) {
    while (!list->empty()) {
      entry(list->head.next)->unlink();
    }
  }
}

bool IdleConnections::add(IdleEntry& e, std::chrono::milliseconds timeout, Clock::time_point now) {
  const Clock::time_point before = nextDue();
  List* list = nullptr;
  for (auto& l : lists_) {
    if (l->timeout == timeout) {
      list = l.get();
      break;
    }
  }
  if (list == nullptr) {
    if (lists_.size() >= kKeptLists) {
      // Timeouts no longer in use (reloads changed them) go once they are empty.
      std::erase_if(lists_, [](const std::unique_ptr<List>& l) { return l->empty(); });
    }
    lists_.push_back(std::make_unique<List>());
    list = lists_.back().get();
    list->timeout = timeout;
    list->head.prev = list->head.next = &list->head;
  }
  e.unlink();
  e.due_ = now + timeout;
  IdleLink& l = e;
  l.prev = list->head.prev;
  l.next = &list->head;
  list->head.prev->next = &l;
  list->head.prev = &l;
  return e.due_ < before;
}

void IdleConnections::expire(Clock::time_point now) {
  for (auto& list : lists_) {
    while (!list->empty()) {
      IdleEntry* e = entry(list->head.next);
      if (e->due_ > now) {
        break;
      }
      e->unlink();
      e->idleExpired();
    }
  }
}

IdleConnections::Clock::time_point IdleConnections::nextDue() const {
  Clock::time_point due = Clock::time_point::max();
  for (const auto& list : lists_) {
    if (!list->empty()) {
      const Clock::time_point d = entry(list->head.next)->due_;
      due = d < due ? d : due;
    }
  }
  return due;
}

}  // namespace sidetrace::proxy
