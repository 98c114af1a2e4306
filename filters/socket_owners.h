#pragma once
// What the kernel says about the app's TCP sockets, for the egress `process` rule
// (process_rule.h): a socket's inode and queues from NETLINK_SOCK_DIAG (inet_diag, one exact
// lookup per socket, all in one batch), and which process holds an inode, by reading the
// `socket:[inode]` links under /proc/PID/fd.
//
// Why here (filters/) and not upstream/: only the parent inference asks these questions, and
// none of it is about reaching an upstream. Nothing here knows HTTP; the parsing pieces are
// free functions so that tests can feed them bytes.
//
// Bounds: every call takes a deadline and returns when it passes (the caller counts that and
// falls back to its next rule). The /proc scan reads at most kMaxScanProcesses processes and
// kMaxFdsPerProcess links in each. One instance per worker thread: nothing is shared.

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sidetrace::filters {

// A TCP socket by its endpoints as its owner sees them: src is its local end, dst the remote.
struct TcpEndpoints {
  bool v6 = false;
  std::array<uint8_t, 16> src{};  // network order; IPv4 in the first 4 bytes
  std::array<uint8_t, 16> dst{};
  uint16_t sport = 0;  // host order
  uint16_t dport = 0;
};

struct TcpSocketState {
  bool found = false;  // an established (or half-closed) socket with these endpoints exists
  uint32_t inode = 0;
  uint32_t rqueue = 0;  // bytes received, not yet read by the owner
  uint32_t wqueue = 0;  // bytes written, not yet acknowledged by the peer
  // Bytes received since the connection began (tcp_info), when asked for and reported.
  std::optional<uint64_t> bytes_received;
};

// Netlink pieces, exposed for tests. One SOCK_DIAG_BY_FAMILY request for exactly `e` (no dump),
// with sequence number `seq`; `want_info` asks for tcp_info (bytes_received).
void appendDiagRequest(std::string& out, const TcpEndpoints& e, uint32_t seq, bool want_info);
// Reads the replies in `buf` (answers to requests with seq 1..states.size(): seq i fills
// states[i-1]; an error reply leaves it not found). Returns how many replies it read; a listening
// or time-wait socket the lookup fell back to counts as not found.
size_t parseDiagReplies(std::string_view buf, std::span<TcpSocketState> states);
// "socket:[12345]" → 12345; anything else → nullopt.
std::optional<uint64_t> parseSocketLink(std::string_view link);
// A /proc entry name that is a process id ("123") → 123; others ("self", "net") → nullopt.
std::optional<int> parsePid(std::string_view name);

using Deadline = std::chrono::steady_clock::time_point;

// One NETLINK_SOCK_DIAG socket, opened on first use.
class SocketDiag {
 public:
  SocketDiag() = default;
  SocketDiag(const SocketDiag&) = delete;
  SocketDiag& operator=(const SocketDiag&) = delete;
  ~SocketDiag();
  // Looks up every socket in `keys` (want_info[i]: also bytes_received). False when the kernel
  // could not be asked or did not answer them all before `deadline` (errno_ says why).
  bool query(std::span<const TcpEndpoints> keys, std::span<const uint8_t> want_info,
             std::span<TcpSocketState> out, Deadline deadline);
  int lastErrno() const { return errno_; }

 private:
  bool queryChunk(std::span<const TcpEndpoints> keys, std::span<const uint8_t> want_info,
                  std::span<TcpSocketState> out, Deadline deadline);
  int fd_ = -1;
  int errno_ = 0;
  std::string buf_;
  std::vector<char> rbuf_;
};

inline constexpr size_t kMaxScanProcesses = 4096;
inline constexpr size_t kMaxFdsPerProcess = 4096;

// inode → process (thread group) id, from /proc/PID/fd. Remembers what it found: an inode names
// one socket while that socket lives, and the processes that owned sockets before are read first.
class SocketOwners {
 public:
  // `self_pid`: the process not to read (0: this one; -1: none, for tests).
  explicit SocketOwners(std::string proc_root = "/proc", int self_pid = 0);
  struct Result {
    bool complete = false;     // every process was read: an inode not found is held by none
    bool out_of_time = false;  // the deadline passed first
    size_t denied = 0;         // processes whose fd table could not be read (EACCES, EPERM)
    size_t processes = 0;      // other processes seen in /proc
  };
  // owners[i] = the pid holding inodes[i], 0 when not found.
  Result find(std::span<const uint32_t> inodes, std::span<int> owners, Deadline deadline);
  // Whether one of `pids` holds `inode`: owner = that pid (or the cached owner, whoever it is),
  // else 0. Only those processes are read, and not again once read whole without it; `complete`
  // says every one of them was read whole, so that 0 means none of them holds it.
  Result findAmong(std::span<const int> pids, uint32_t inode, int& owner, Deadline deadline);
  size_t cached() const { return cache_.size(); }

 private:
  static constexpr size_t kSlotsPerProcess = 4;
  // Reads one process's fd links (the slots it held wanted sockets in first); fills owners for
  // the wanted inodes it holds. False when its fd table could not be read.
  bool scanProcess(int pid, std::span<const uint32_t> inodes, std::span<int> owners,
                   size_t& missing, Deadline deadline, bool& out_of_time);
  // Reads the link `name` in the fd directory `dfd`; true when it is a wanted, missing inode.
  bool checkLink(int dfd, const char* name, int pid, std::span<const uint32_t> inodes,
                 std::span<int> owners, size_t& missing);
  void rememberSlot(int pid, int fd);  // most recent first
  void rememberFound();                // found_ go to the front of hot_

  std::string root_;
  int self_;
  std::unordered_map<uint32_t, int> cache_;  // inode → pid; cleared past 4096 entries
  std::vector<int> hot_;                     // pids that held wanted sockets, newest first
  // inode → processes read whole without it (findAmong) while it lived. A process gains a live
  // socket only by inheriting it at fork (a new pid) or having it passed (SCM_RIGHTS, rare): what
  // is here stays true, so a kept-alive outbound connection whose owner is none of the candidates
  // is not read for again and again. Cleared past 4096 inodes, as cache_.
  std::unordered_map<uint32_t, std::vector<int>> not_held_;
  // pid → fd numbers that held wanted sockets, newest first (-1: none); cleared past 1024 pids.
  std::unordered_map<int, std::array<int, kSlotsPerProcess>> slots_;
  std::vector<int> pids_;   // scratch: this scan's process list
  std::vector<int> found_;  // scratch: pids that held wanted sockets
  int resume_below_ = 0;    // the last scan ran out of time here: the next goes on below it
  std::string path_;
};

}  // namespace sidetrace::filters
