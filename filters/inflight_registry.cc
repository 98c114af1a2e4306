#include "filters/inflight_registry.h"

#include <cstring>
#include <utility>

namespace sidetrace::filters {

const char* parentSourceName(ParentSource s) {
  switch (s) {
    case ParentSource::Header:
      return "header";
    case ParentSource::RequestId:
      return "request_id";
    case ParentSource::Process:
      return "process";
    case ParentSource::SingleInflight:
      return "single_inflight";
    case ParentSource::None:
      return "none";
  }
  return "none";
}

namespace {

uint64_t word(const std::array<uint8_t, 16>& a, size_t half) {
  uint64_t v;
  std::memcpy(&v, a.data() + half * 8, 8);
  return v;
}

void unword(std::array<uint8_t, 16>& a, size_t half, uint64_t v) {
  std::memcpy(a.data() + half * 8, &v, 8);
}

}  // namespace

void HopSocket::publish(uint64_t meta) {
  ++version_;
  meta_.store(meta | (uint64_t{version_} << 48), std::memory_order_release);
}

void HopSocket::setKnown(const TcpEndpoints& app, uint64_t bytes_before) {
  meta_.store(0, std::memory_order_relaxed);  // a reader meanwhile sees a change
  std::atomic_thread_fence(std::memory_order_release);
  addr_[0].store(word(app.src, 0), std::memory_order_relaxed);
  addr_[1].store(word(app.src, 1), std::memory_order_relaxed);
  addr_[2].store(word(app.dst, 0), std::memory_order_relaxed);
  addr_[3].store(word(app.dst, 1), std::memory_order_relaxed);
  bytes_.store(bytes_before, std::memory_order_relaxed);
  publish(static_cast<uint64_t>(State::Known) | (uint64_t{app.v6} << 8) |
          (uint64_t{app.sport} << 16) | (uint64_t{app.dport} << 32));
}

void HopSocket::setOpaque() {
  publish(static_cast<uint64_t>(State::Opaque));
}

void HopSocket::clear() {
  if (meta_.load(std::memory_order_relaxed) != 0) {
    meta_.store(0, std::memory_order_relaxed);
  }
}

HopSocket::View HopSocket::load() const {
  View v;
  const uint64_t m = meta_.load(std::memory_order_acquire);
  unword(v.app.src, 0, addr_[0].load(std::memory_order_relaxed));
  unword(v.app.src, 1, addr_[1].load(std::memory_order_relaxed));
  unword(v.app.dst, 0, addr_[2].load(std::memory_order_relaxed));
  unword(v.app.dst, 1, addr_[3].load(std::memory_order_relaxed));
  v.bytes_before = bytes_.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (meta_.load(std::memory_order_relaxed) != m) {
    v.state = State::Opaque;  // rewritten while read: judged as unknown
    return v;
  }
  v.state = static_cast<State>(m & 0xff);
  v.app.v6 = ((m >> 8) & 1) != 0;
  v.app.sport = static_cast<uint16_t>(m >> 16);
  v.app.dport = static_cast<uint16_t>(m >> 32);
  return v;
}

uint64_t InflightRegistry::add(std::string_view request_id, const tracing::SpanContext& hop,
                               const HopSocket* socket) {
  std::lock_guard lock(mu_);
  if (size_ == entries_.size()) {
    entries_.emplace_back();
  }
  Entry& e = entries_[size_++];
  e.token = next_token_++;
  e.request_id.assign(request_id);
  e.hop = hop;
  e.socket = socket;
  return e.token;
}

void InflightRegistry::remove(uint64_t token) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < size_; ++i) {
    if (entries_[i].token == token) {
      if (i != size_ - 1) {
        std::swap(entries_[i], entries_[size_ - 1]);
      }
      --size_;
      return;
    }
  }
}

size_t InflightRegistry::size() const {
  std::lock_guard lock(mu_);
  return size_;
}

ParentInference InflightRegistry::infer(std::optional<std::string_view> request_id,
                                        ProcessProbe* probe, const TcpEndpoints* outbound) const {
  ParentInference out;
  std::unique_lock lock(mu_);
  // request_id: the id must name exactly one request in flight. A client may send any id on its
  // inbound request, so two in flight with one id decide nothing (a wrong parent is worse than
  // none).
  if (request_id && !request_id->empty()) {
    const Entry* match = nullptr;
    size_t matches = 0;
    for (size_t i = 0; i < size_; ++i) {
      if (entries_[i].request_id == *request_id) {
        match = &entries_[i];
        ++matches;
      }
    }
    if (matches == 1) {
      if (match->hop.valid()) {
        out.source = ParentSource::RequestId;
        out.parent = match->hop;
      }
      return out;  // the cause is known and untraced: no parent, and no other candidate
    }
  }
  if (probe != nullptr && outbound != nullptr && size_ > 0 && size_ <= kMaxProcessHops) {
    probe->hops.resize(size_);
    for (size_t i = 0; i < size_; ++i) {
      probe->hops[i].hop = entries_[i].hop;
      probe->hops[i].socket =
          entries_[i].socket != nullptr ? entries_[i].socket->load() : HopSocket::View();
      if (entries_[i].socket == nullptr) {
        probe->hops[i].socket.state = HopSocket::State::Opaque;
      }
    }
    lock.unlock();  // the kernel is asked with the lock released
    return inferByProcess(*probe, *outbound);
  }
  if (size_ == 1 && entries_[0].hop.valid()) {
    out.source = ParentSource::SingleInflight;
    out.parent = entries_[0].hop;
    return out;
  }
  for (size_t i = 0; i < size_ && out.link_count < kMaxParentLinks; ++i) {
    if (entries_[i].hop.valid()) {
      out.links[out.link_count++] = entries_[i].hop;
    }
  }
  return out;
}

// Exactly one candidate and nothing the rule could not judge → that request. Otherwise the next
// rules decide, on the same copy, as without the rule: a request held by another process still
// counts, since an app may hand its requests on (nginx in front of PHP-FPM in one container),
// where single_inflight is right and the process rule cannot see it.
ParentInference InflightRegistry::inferByProcess(ProcessProbe& probe,
                                                 const TcpEndpoints& outbound) const {
  ParentInference out;
  const auto& hops = probe.hops;
  probe.verdicts.assign(hops.size(), HopVerdict::Unknown);
  const auto outcome = probe.judge(outbound, hops, probe.verdicts);
  if (outcome == ProcessProbe::Outcome::OverBudget) {
    over_budget_.fetch_add(1, std::memory_order_relaxed);
  } else if (outcome == ProcessProbe::Outcome::Unavailable) {
    unavailable_.fetch_add(1, std::memory_order_relaxed);
  }
  const bool ran = outcome == ProcessProbe::Outcome::Ran;
  if (!ran) {
    probe.verdicts.assign(hops.size(), HopVerdict::Unknown);
  }
  size_t candidates = 0;
  size_t unknown = 0;
  size_t pick = 0;
  for (size_t i = 0; i < hops.size(); ++i) {
    if (probe.verdicts[i] == HopVerdict::Candidate) {
      ++candidates;
      pick = i;
    }
    unknown += probe.verdicts[i] == HopVerdict::Unknown ? 1 : 0;
  }
  if (ran && candidates == 1 && unknown == 0) {
    if (hops[pick].hop.valid()) {
      out.source = ParentSource::Process;
      out.parent = hops[pick].hop;
    }
    return out;  // an untraced cause: no parent, no links
  }
  if (hops.size() == 1 && hops[0].hop.valid()) {
    out.source = ParentSource::SingleInflight;
    out.parent = hops[0].hop;
    return out;
  }
  for (size_t i = 0; i < hops.size() && out.link_count < kMaxParentLinks; ++i) {
    if (hops[i].hop.valid()) {
      out.links[out.link_count++] = hops[i].hop;
    }
  }
  return out;
}

}  // namespace sidetrace::filters
