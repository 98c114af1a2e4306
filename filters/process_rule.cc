#include "filters/process_rule.h"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace sidetrace::filters {

namespace {

// Said once per process, whichever worker finds out first.
std::atomic<bool> g_logged_unavailable{false};

TcpEndpoints reversed(const TcpEndpoints& e) {
  TcpEndpoints r;
  r.v6 = e.v6;
  r.src = e.dst;
  r.dst = e.src;
  r.sport = e.dport;
  r.dport = e.sport;
  return r;
}

}  // namespace

bool parseIpLiteral(std::string_view text, std::array<uint8_t, 16>& out, bool& v6) {
  char buf[64];
  if (text.empty() || text.size() >= sizeof buf) {
    return false;
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  out.fill(0);
  if (::inet_pton(AF_INET, buf, out.data()) == 1) {
    v6 = false;
    return true;
  }
  if (::inet_pton(AF_INET6, buf, out.data()) == 1) {
    v6 = true;
    return true;
  }
  return false;
}

ProcessRule::ProcessRule(std::chrono::microseconds budget, std::string proc_root, int self_pid)
    : budget_(budget), owners_(std::move(proc_root), self_pid) {}

ProcessProbe::Outcome ProcessRule::unavailable(const char* why) {
  if (!g_logged_unavailable.exchange(true)) {
    spdlog::warn(
        "egress: the process parent rule cannot see the app's sockets ({}); outbound calls "
        "fall back to the next rule (single_inflight, none). In Kubernetes the sidecar needs "
        "shareProcessNamespace: true and the app's user or CAP_SYS_PTRACE (sidetrace inject "
        "--process-rule=uid|ptrace); egress.process: false turns the rule off. Said once.",
        why);
  }
  return Outcome::Unavailable;
}

void ProcessRule::judgeQueues(std::span<const InflightHop> hops, std::span<HopVerdict> out) {
  for (size_t i = 0; i < hops.size(); ++i) {
    if (key_of_[i] == 0) {
      continue;  // judged when the keys were made
    }
    const TcpSocketState& app = states_[key_of_[i]];
    const TcpSocketState& proxy = states_[key_of_[i] + 1];
    if (!app.found || !proxy.found || app.rqueue > 0 || app.wqueue > 0) {
      out[i] = HopVerdict::NotCause;  // gone, not read yet, or an answer on its way
    } else if (!proxy.bytes_received) {
      out[i] = HopVerdict::Unknown;  // a kernel without tcp_info's byte counts
    } else if (*proxy.bytes_received > hops[i].socket.bytes_before) {
      out[i] = HopVerdict::NotCause;  // the app has begun to answer
    } else {
      need_.push_back(i);
      inodes_.push_back(app.inode);
    }
  }
}

ProcessProbe::Outcome ProcessRule::judge(const TcpEndpoints& outbound,
                                         std::span<const InflightHop> hops,
                                         std::span<HopVerdict> out) {
  const Deadline deadline = std::chrono::steady_clock::now() + budget_;
  keys_.assign(1, outbound);
  want_info_.assign(1, 0);
  key_of_.assign(hops.size(), 0);
  for (size_t i = 0; i < hops.size(); ++i) {
    const auto& sock = hops[i].socket;
    if (sock.state == HopSocket::State::Opaque) {
      return Outcome::Skipped;  // a request the rule cannot judge: it cannot decide
    }
    if (sock.state == HopSocket::State::Unsent) {
      out[i] = HopVerdict::NotCause;  // no byte of it has reached the app
      continue;
    }
    key_of_[i] = keys_.size();
    keys_.push_back(sock.app);
    want_info_.push_back(0);
    keys_.push_back(reversed(sock.app));  // the proxy's end: has the answer begun?
    want_info_.push_back(1);
  }
  states_.resize(keys_.size());
  if (!diag_.query(keys_, want_info_, states_, deadline)) {
    const int err = diag_.lastErrno();
    if (err == EAGAIN || err == EWOULDBLOCK) {
      return Outcome::OverBudget;
    }
    return unavailable(err == EPERM || err == EACCES ? "netlink sock_diag: permission denied"
                                                     : "netlink sock_diag failed");
  }
  if (!states_[0].found) {
    // Another network namespace, or a wildcard listener reached from another address.
    return unavailable("the app's end of the outbound connection is not in this network view");
  }
  need_.clear();
  inodes_.clear();
  judgeQueues(hops, out);
  if (need_.empty()) {
    return Outcome::Ran;  // every request judged by its queues: no owner can make a candidate
  }
  // The owners of the requests the app has read and not answered (cached, or found in /proc),
  // then whether one of those processes holds the outbound socket: only they can make it a
  // candidate, so only their fd tables are read for it.
  pids_.resize(inodes_.size());
  const auto found = owners_.find(inodes_, pids_, deadline);
  candidates_.clear();
  for (int pid : pids_) {
    if (pid != 0 && std::find(candidates_.begin(), candidates_.end(), pid) == candidates_.end()) {
      candidates_.push_back(pid);
    }
  }
  if (candidates_.empty()) {
    if (found.out_of_time) {
      return Outcome::OverBudget;
    }
    if (found.denied > 0 || found.processes == 0) {
      return unavailable(found.denied > 0 ? "/proc/PID/fd: permission denied"
                                          : "no other process in /proc");
    }
  }
  int caller = 0;
  const auto among = candidates_.empty()
                         ? SocketOwners::Result{.complete = true}
                         : owners_.findAmong(candidates_, states_[0].inode, caller, deadline);
  if (caller == 0 && !among.complete) {
    if (among.out_of_time) {
      return Outcome::OverBudget;
    }
    return unavailable("/proc/PID/fd: permission denied");
  }
  bool unknown = false;
  for (size_t k = 0; k < need_.size(); ++k) {
    const int pid = pids_[k];
    HopVerdict& v = out[need_[k]];
    // caller 0 here: none of the owners holds the outbound socket (each read whole).
    v = pid != 0 && pid == caller ? HopVerdict::Candidate
        : pid != 0                ? HopVerdict::OtherProcess
        // Held by no process: a connection the app has not accepted yet.
        : found.complete ? HopVerdict::NotCause
                         : HopVerdict::Unknown;
    unknown = unknown || v == HopVerdict::Unknown;
  }
  return unknown && found.out_of_time ? Outcome::OverBudget : Outcome::Ran;
}

}  // namespace sidetrace::filters
