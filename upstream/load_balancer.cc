#include "upstream/load_balancer.h"

#include <algorithm>
#include <cassert>
#include <random>
#include <utility>

namespace sidetrace::upstream {

LbPolicy lbPolicy(std::string_view name) {
  if (name == "random") {
    return LbPolicy::Random;
  }
  if (name == "least_request") {
    return LbPolicy::LeastRequest;
  }
  return LbPolicy::RoundRobin;
}

uint64_t randomLbSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

LoadBalancer::LoadBalancer(LbPolicy policy, std::vector<uint32_t> weights, uint64_t seed)
    : LoadBalancer(policy, weights, seed, {}) {}

LoadBalancer::LoadBalancer(LbPolicy policy, std::vector<uint32_t> weights, uint64_t seed,
                           std::vector<size_t> ids)
    : size_(weights.size()), weights_(std::move(weights)), ids_(std::move(ids)), rng_state_(seed) {
  assert(size_ > 0);
  if (ids_.empty()) {
    for (size_t i = 0; i < size_; ++i) {
      ids_.push_back(i);
    }
  }
  assert(ids_.size() == size_);
  equal_weights_ = std::all_of(weights_.begin(), weights_.end(),
                               [&](uint32_t w) { return w == weights_.front(); });
  for (uint32_t w : weights_) {
    assert(w > 0);
    total_ += w;
    cumulative_.push_back(total_);
  }
  switch (policy) {
    case LbPolicy::RoundRobin:
      mode_ = equal_weights_ ? Mode::Rotate : Mode::SmoothWeighted;
      current_.assign(size_, 0);
      break;
    case LbPolicy::Random:
      mode_ = Mode::Random;
      break;
    case LbPolicy::LeastRequest:
      mode_ = size_ == 1 ? Mode::Rotate : Mode::LeastRequest;
      break;
  }
}

size_t LoadBalancer::pickOther(std::span<const uint32_t> active) {
  switch (mode_) {
    case Mode::SmoothWeighted:
      return smoothWeighted();
    case Mode::Random:
      return randomIndex();
    case Mode::LeastRequest: {
      assert(!active.empty());
      const size_t a = randomIndex();
      const size_t b = randomIndexOtherThan(a);
      return active[ids_[b]] < active[ids_[a]] ? b : a;
    }
    case Mode::Rotate:
      break;
  }
  return 0;
}

// nginx's ngx_http_upstream_get_peer: every endpoint earns its weight, the richest is picked and
// pays the total. Over any total_ consecutive picks each endpoint is picked exactly weight times.
size_t LoadBalancer::smoothWeighted() {
  size_t best = 0;
  for (size_t i = 0; i < size_; ++i) {
    current_[i] += weights_[i];
    if (current_[i] > current_[best]) {
      best = i;
    }
  }
  current_[best] -= static_cast<int64_t>(total_);
  return best;
}

size_t LoadBalancer::randomIndex() {
  if (equal_weights_) {
    return static_cast<size_t>(uniform(size_));
  }
  return indexOfTicket(uniform(total_));
}

// Weighted among the others: draw from the tickets that are not `first`'s, then skip over its
// range. Exact, and one draw even when `first` holds nearly every ticket.
size_t LoadBalancer::randomIndexOtherThan(size_t first) {
  if (equal_weights_) {
    const auto i = static_cast<size_t>(uniform(size_ - 1));
    return i >= first ? i + 1 : i;
  }
  const uint64_t w = weights_[first];
  uint64_t ticket = uniform(total_ - w);
  if (ticket >= cumulative_[first] - w) {
    ticket += w;
  }
  return indexOfTicket(ticket);
}

size_t LoadBalancer::indexOfTicket(uint64_t ticket) const {
  return static_cast<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), ticket) -
                             cumulative_.begin());
}

// Lemire's multiply-shift: no division, and a bias of bound / 2^64 at most.
uint64_t LoadBalancer::uniform(uint64_t bound) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(nextRandom()) * bound) >> 64);
}

uint64_t LoadBalancer::nextRandom() {
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace sidetrace::upstream
