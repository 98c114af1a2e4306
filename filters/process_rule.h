#pragma once
// The egress `process` parent rule: the kernel's view of the app's sockets. An inbound request is
// a candidate for an outbound call's cause when the app-side socket of its hop
//   - is held by the same process (thread group) as the app's end of the outbound connection,
//   - has an empty receive queue (the app has read the request), and
//   - has sent nothing back yet (nothing queued to send, and the proxy's end has received no
//     byte past what it had read before the request).
// Exactly one candidate, and no request the rule could not judge → its parent. This is exact for
// servers that work on one request per process at a time (single-threaded, pre-fork) at any
// concurrency; a thread-per-request or async server has several candidates in one process and
// falls through to the next rule.
//
// Costs only on the egress path: one netlink batch (one exact lookup per socket) and, for inodes
// not seen before, a read of /proc/PID/fd links (processes that held the app's sockets first, and
// in each the descriptors that held them first). The outbound socket's owner is looked for only
// in the processes holding requests the app has read and not answered: no other owner can make a
// candidate. Nothing is looked up when no request is in that state.
// The whole judgement runs under a time budget; past it, or without visibility of the app's
// processes (Kubernetes without shareProcessNamespace, EPERM), the next rule decides and a
// counter says why; the first time the processes cannot be seen is logged once.

#include <chrono>
#include <string>
#include <vector>

#include "filters/inflight_registry.h"
#include "filters/socket_owners.h"

namespace sidetrace::filters {

class ProcessRule final : public ProcessProbe {
 public:
  explicit ProcessRule(std::chrono::microseconds budget = std::chrono::microseconds(2000),
                       std::string proc_root = "/proc", int self_pid = 0);
  Outcome judge(const TcpEndpoints& outbound, std::span<const InflightHop> hops,
                std::span<HopVerdict> out) override;

 private:
  // Judges each hop from its two sockets' states; those that need an owner go to need_.
  void judgeQueues(std::span<const InflightHop> hops, std::span<HopVerdict> out);
  Outcome unavailable(const char* why);

  std::chrono::microseconds budget_;
  SocketDiag diag_;
  SocketOwners owners_;
  std::vector<TcpEndpoints> keys_;  // [0] the outbound socket, then per Known hop: app, proxy end
  std::vector<uint8_t> want_info_;
  std::vector<TcpSocketState> states_;
  std::vector<size_t> key_of_;    // hop → index of its app-side key (0: none)
  std::vector<uint32_t> inodes_;  // need_'s app-side sockets
  std::vector<size_t> need_;      // hops whose owner decides
  std::vector<int> pids_;         // their owners
  std::vector<int> candidates_;   // the distinct owners: where the outbound socket is looked for
};

// "127.0.0.1" / "::1" into `out` (network order); false when not an IP literal.
bool parseIpLiteral(std::string_view text, std::array<uint8_t, 16>& out, bool& v6);

}  // namespace sidetrace::filters
