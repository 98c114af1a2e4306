#pragma once
// Endpoint choice for one worker's pool of one cluster (clusters[].lb). Plain state, no locks or
// atomics: each worker owns its pools, so each balancer is used by one thread. A balancer chooses
// among `ids` (by default 0..n-1: the cluster's endpoint indexes); a pick is one of them, and
// active-request counts are indexed by id, so a pool can balance over the endpoints DNS currently
// returns without renumbering its per-endpoint state.
//
//   round_robin    equal weights: strict rotation. Otherwise nginx's smooth weighted round robin:
//                  deterministic, each endpoint gets exactly its share of every sum-of-weights
//                  picks, and a heavy endpoint's picks are spread out rather than bunched.
//   random         weighted random.
//   least_request  power of two choices: two distinct endpoints drawn at random (weighted), the
//                  one with fewer active requests on this worker wins; a tie goes to the first.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace sidetrace::upstream {

enum class LbPolicy { RoundRobin, Random, LeastRequest };

// The policy clusters[].lb names (validated at load); anything else reads as round robin.
LbPolicy lbPolicy(std::string_view name);

// A seed from the system's entropy source, for one balancer (not per pick): workers should not
// make the same random choices in lockstep.
uint64_t randomLbSeed();

class LoadBalancer {
 public:
  // weights: one per endpoint, each at least 1; at least one endpoint. seed: the random policies'
  // generator (a fixed seed makes picks reproducible, for tests).
  LoadBalancer(LbPolicy policy, std::vector<uint32_t> weights, uint64_t seed);
  // The same over endpoints `ids` (one per weight).
  LoadBalancer(LbPolicy policy, std::vector<uint32_t> weights, uint64_t seed,
               std::vector<size_t> ids);

  // The next endpoint's id. `active` (least_request only, ignored otherwise): the active
  // requests per endpoint on this worker, indexed by id.
  size_t pick(std::span<const uint32_t> active = {}) {
    if (mode_ == Mode::Rotate) {  // the common case, kept as cheap as a counter
      const size_t i = next_;
      next_ = i + 1 == size_ ? 0 : i + 1;
      return ids_[i];
    }
    return ids_[pickOther(active)];
  }

  size_t size() const { return size_; }

 private:
  enum class Mode { Rotate, SmoothWeighted, Random, LeastRequest };

  size_t pickOther(std::span<const uint32_t> active);
  size_t smoothWeighted();
  size_t randomIndex();
  size_t randomIndexOtherThan(size_t first);
  size_t indexOfTicket(uint64_t ticket) const;  // the endpoint owning ticket (0..total_-1)
  uint64_t uniform(uint64_t bound);             // 0..bound-1
  uint64_t nextRandom();                        // splitmix64

  Mode mode_ = Mode::Rotate;
  size_t size_;
  size_t next_ = 0;  // Rotate
  bool equal_weights_ = true;
  std::vector<uint32_t> weights_;
  std::vector<size_t> ids_;  // what each of the positions the policies choose among stands for
  std::vector<uint64_t> cumulative_;  // inclusive prefix sums of weights_ (random draws)
  std::vector<int64_t> current_;      // SmoothWeighted: each endpoint's running credit
  uint64_t total_ = 0;                // sum of weights_
  uint64_t rng_state_;
};

}  // namespace sidetrace::upstream
