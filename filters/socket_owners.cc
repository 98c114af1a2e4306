#include "filters/socket_owners.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>

namespace sidetrace::filters {

namespace {

// TCP states (include/net/tcp_states.h) the exact lookup may fall back to or find closing.
constexpr uint8_t kTcpTimeWait = 6;
constexpr uint8_t kTcpClose = 7;
constexpr uint8_t kTcpListen = 10;

struct DiagRequest {
  nlmsghdr nlh;
  inet_diag_req_v2 req;
};

}  // namespace

void appendDiagRequest(std::string& out, const TcpEndpoints& e, uint32_t seq, bool want_info) {
  DiagRequest r;
  std::memset(&r, 0, sizeof r);
  r.nlh.nlmsg_len = sizeof r;
  r.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  r.nlh.nlmsg_flags = NLM_F_REQUEST;
  r.nlh.nlmsg_seq = seq;
  r.req.sdiag_family = e.v6 ? AF_INET6 : AF_INET;
  r.req.sdiag_protocol = IPPROTO_TCP;
  r.req.idiag_ext = want_info ? static_cast<uint8_t>(1u << (INET_DIAG_INFO - 1)) : 0;
  r.req.idiag_states = ~0u;
  r.req.id.idiag_sport = htons(e.sport);
  r.req.id.idiag_dport = htons(e.dport);
  std::memcpy(r.req.id.idiag_src, e.src.data(), e.v6 ? 16 : 4);
  std::memcpy(r.req.id.idiag_dst, e.dst.data(), e.v6 ? 16 : 4);
  r.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  r.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  out.append(reinterpret_cast<const char*>(&r), sizeof r);
}

namespace {

// One inet_diag_msg reply (the attributes follow it) into `st`.
void parseDiagMessage(const char* data, size_t len, TcpSocketState& st) {
  if (len < sizeof(inet_diag_msg)) {
    return;
  }
  inet_diag_msg m;
  std::memcpy(&m, data, sizeof m);
  if (m.idiag_state == kTcpListen || m.idiag_state == kTcpTimeWait || m.idiag_state == kTcpClose) {
    return;  // the lookup fell back to the listener, or the connection is gone
  }
  st.found = true;
  st.inode = m.idiag_inode;
  st.rqueue = m.idiag_rqueue;
  st.wqueue = m.idiag_wqueue;
  size_t off = NLMSG_ALIGN(sizeof m);
  while (off + sizeof(rtattr) <= len) {
    rtattr a;
    std::memcpy(&a, data + off, sizeof a);
    if (a.rta_len < sizeof(rtattr) || off + a.rta_len > len) {
      break;
    }
    const size_t payload = a.rta_len - RTA_LENGTH(0);
    constexpr size_t kEnd = offsetof(tcp_info, tcpi_bytes_received) + sizeof(uint64_t);
    if (a.rta_type == INET_DIAG_INFO && payload >= kEnd) {
      uint64_t v;
      std::memcpy(&v, data + off + RTA_LENGTH(0) + offsetof(tcp_info, tcpi_bytes_received),
                  sizeof v);
      st.bytes_received = v;
    }
    off += RTA_ALIGN(a.rta_len);
  }
}

}  // namespace

size_t parseDiagReplies(std::string_view buf, std::span<TcpSocketState> states) {
  size_t replies = 0;
  size_t off = 0;
  while (off + sizeof(nlmsghdr) <= buf.size()) {
    nlmsghdr h;
    std::memcpy(&h, buf.data() + off, sizeof h);
    if (h.nlmsg_len < sizeof(nlmsghdr) || off + h.nlmsg_len > buf.size()) {
      break;
    }
    const size_t idx = h.nlmsg_seq - 1;  // seq 0 wraps to a huge index: ignored below
    if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY || h.nlmsg_type == NLMSG_ERROR) {
      ++replies;
      if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY && idx < states.size()) {
        parseDiagMessage(buf.data() + off + NLMSG_HDRLEN, h.nlmsg_len - NLMSG_HDRLEN, states[idx]);
      }
    }
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
  return replies;
}

std::optional<uint64_t> parseSocketLink(std::string_view link) {
  constexpr std::string_view kPrefix = "socket:[";
  if (!link.starts_with(kPrefix) || !link.ends_with(']') || link.size() < kPrefix.size() + 2) {
    return std::nullopt;
  }
  const std::string_view digits = link.substr(kPrefix.size(), link.size() - kPrefix.size() - 1);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || p != digits.data() + digits.size()) {
    return std::nullopt;
  }
  return v;
}

std::optional<int> parsePid(std::string_view name) {
  int v = 0;
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), v);
  if (name.empty() || name[0] == '0' || ec != std::errc() || p != name.data() + name.size() ||
      v <= 0) {
    return std::nullopt;
  }
  return v;
}

SocketDiag::~SocketDiag() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool SocketDiag::query(std::span<const TcpEndpoints> keys, std::span<const uint8_t> want_info,
                       std::span<TcpSocketState> out, Deadline deadline) {
  for (auto& st : out) {
    st = TcpSocketState();
  }
  if (fd_ < 0) {
    fd_ = ::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG);
    if (fd_ < 0) {
      errno_ = errno;
      return false;
    }
  }
  // In chunks whose replies surely fit the socket's default receive buffer.
  constexpr size_t kChunk = 32;
  for (size_t at = 0; at < keys.size(); at += kChunk) {
    const size_t n = std::min(kChunk, keys.size() - at);
    if (!queryChunk(keys.subspan(at, n), want_info.subspan(at, n), out.subspan(at, n), deadline)) {
      return false;
    }
  }
  return true;
}

bool SocketDiag::queryChunk(std::span<const TcpEndpoints> keys, std::span<const uint8_t> want_info,
                            std::span<TcpSocketState> out, Deadline deadline) {
  buf_.clear();
  for (size_t i = 0; i < keys.size(); ++i) {
    appendDiagRequest(buf_, keys[i], static_cast<uint32_t>(i + 1), want_info[i] != 0);
  }
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_, buf_.data(), buf_.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    errno_ = errno;
    return false;
  }
  // The kernel answers while it handles the send (one datagram per request): the replies are
  // all queued by now, and are read in as few calls as they fit in. One missing means it was
  // dropped (a full receive buffer): the caller gives up on this judgement.
  constexpr size_t kSlot = 2048;  // one reply with tcp_info is under 400 bytes
  constexpr size_t kSlots = 32;   // a chunk
  rbuf_.resize(kSlot * kSlots);
  std::array<mmsghdr, kSlots> msgs;
  std::array<iovec, kSlots> iov;
  size_t replies = 0;
  while (replies < keys.size()) {
    const size_t want = std::min(kSlots, keys.size() - replies);
    for (size_t i = 0; i < want; ++i) {
      iov[i] = {rbuf_.data() + i * kSlot, kSlot};
      std::memset(&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = ::recvmmsg(fd_, msgs.data(), static_cast<unsigned>(want), MSG_DONTWAIT, nullptr);
    if (n <= 0 || std::chrono::steady_clock::now() >= deadline) {
      errno_ = n < 0 ? errno : EAGAIN;
      // Replies left behind would be read as answers to the next batch: start afresh.
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    for (int j = 0; j < n; ++j) {
      const size_t len = std::min<size_t>(msgs[static_cast<size_t>(j)].msg_len, kSlot);
      replies += parseDiagReplies(
          std::string_view(rbuf_.data() + static_cast<size_t>(j) * kSlot, len), out);
    }
  }
  return true;
}

SocketOwners::SocketOwners(std::string proc_root, int self_pid)
    : root_(std::move(proc_root)), self_(self_pid != 0 ? self_pid : ::getpid()) {}

void SocketOwners::rememberFound() {
  for (int pid : found_) {
    auto it = std::find(hot_.begin(), hot_.end(), pid);
    if (it != hot_.end()) {
      hot_.erase(it);
    }
    hot_.insert(hot_.begin(), pid);
  }
  if (hot_.size() > 64) {
    hot_.resize(64);
  }
}

bool SocketOwners::checkLink(int dfd, const char* name, int pid, std::span<const uint32_t> inodes,
                             std::span<int> owners, size_t& missing) {
  char link[64];
  const ssize_t n = ::readlinkat(dfd, name, link, sizeof link);
  if (n <= 0 || static_cast<size_t>(n) >= sizeof link) {
    return false;
  }
  auto inode = parseSocketLink(std::string_view(link, static_cast<size_t>(n)));
  if (!inode) {
    return false;
  }
  bool found = false;
  for (size_t i = 0; i < inodes.size(); ++i) {
    if (inodes[i] == *inode && owners[i] == 0) {
      owners[i] = pid;
      cache_[inodes[i]] = pid;
      found = true;
      --missing;
    }
  }
  return found;
}

void SocketOwners::rememberSlot(int pid, int fd) {
  if (slots_.size() > 1024) {
    slots_.clear();
  }
  std::array<int, kSlotsPerProcess> none;
  none.fill(-1);
  auto& slots = slots_.try_emplace(pid, none).first->second;
  auto end = std::remove(slots.begin(), slots.end(), fd);
  std::fill(end, slots.end(), -1);
  std::rotate(slots.begin(), slots.end() - 1, slots.end());  // free the front (a -1 or the oldest)
  slots.front() = fd;
}

bool SocketOwners::scanProcess(int pid, std::span<const uint32_t> inodes, std::span<int> owners,
                               size_t& missing, Deadline deadline, bool& out_of_time) {
  path_.assign(root_);
  path_ += '/';
  char num[16];
  path_.append(num, std::to_chars(num, num + sizeof num, pid).ptr);
  path_ += "/fd";
  const int dfd = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    return errno == ENOENT;  // a process that ended meanwhile holds nothing
  }
  bool found_here = false;
  // First the descriptors where this process held wanted sockets before: a new socket takes the
  // lowest free number, so a process that opens one connection after another (a pre-fork worker,
  // an HTTP/1.0 client) reuses the same few. A hit is the link read now, as in the full scan.
  std::array<int, kSlotsPerProcess> tried;
  tried.fill(-1);
  if (auto it = slots_.find(pid); it != slots_.end()) {
    tried = it->second;
    for (int fd : tried) {
      if (fd >= 0 && missing > 0) {
        char name[16];
        *std::to_chars(name, name + sizeof name - 1, fd).ptr = '\0';
        if (checkLink(dfd, name, pid, inodes, owners, missing)) {
          found_here = true;
          rememberSlot(pid, fd);
        }
      }
    }
  }
  DIR* dir = missing > 0 ? ::fdopendir(dfd) : nullptr;
  if (missing > 0 && dir == nullptr) {
    ::close(dfd);
    return false;
  }
  size_t fds = 0;
  while (dir != nullptr && missing > 0) {
    dirent* d = ::readdir(dir);
    if (d == nullptr) {
      break;
    }
    if (d->d_name[0] == '.') {
      continue;
    }
    if (++fds > kMaxFdsPerProcess ||
        ((fds & 63) == 0 && std::chrono::steady_clock::now() >= deadline)) {
      out_of_time = fds <= kMaxFdsPerProcess;
      break;
    }
    int fd = -1;
    std::from_chars(d->d_name, d->d_name + std::strlen(d->d_name), fd);
    if (fd >= 0 && std::find(tried.begin(), tried.end(), fd) != tried.end()) {
      continue;  // read just above
    }
    if (checkLink(dfd, d->d_name, pid, inodes, owners, missing)) {
      found_here = true;
      rememberSlot(pid, fd);
    }
  }
  if (dir != nullptr) {
    ::closedir(dir);
  } else {
    ::close(dfd);
  }
  if (found_here) {
    found_.push_back(pid);
  }
  return true;
}

SocketOwners::Result SocketOwners::findAmong(std::span<const int> pids, uint32_t inode, int& owner,
                                             Deadline deadline) {
  Result r;
  const uint32_t inodes[] = {inode};
  std::span<int> owners(&owner, 1);
  size_t missing = 0;
  if (auto it = cache_.find(inode); it != cache_.end()) {
    owner = it->second;
  } else {
    owner = 0;
    missing = 1;
  }
  if (not_held_.size() > 4096) {
    not_held_.clear();
  }
  std::vector<int>* read_whole = missing > 0 ? &not_held_[inode] : nullptr;
  found_.clear();
  for (size_t i = 0; i < pids.size() && missing > 0 && !r.out_of_time; ++i) {
    if (std::find(read_whole->begin(), read_whole->end(), pids[i]) != read_whole->end()) {
      continue;  // read whole before, while the socket already lived: not there
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      r.out_of_time = true;
      break;
    }
    bool cut = false;
    if (!scanProcess(pids[i], inodes, owners, missing, deadline, cut)) {
      ++r.denied;
    } else if (!cut && missing > 0 && read_whole->size() < 16) {
      read_whole->push_back(pids[i]);
    }
    r.out_of_time = cut;
  }
  if (missing == 0) {
    not_held_.erase(inode);
  }
  rememberFound();
  r.processes = pids.size();
  r.complete = missing == 0 || (!r.out_of_time && r.denied == 0);
  return r;
}

SocketOwners::Result SocketOwners::find(std::span<const uint32_t> inodes, std::span<int> owners,
                                        Deadline deadline) {
  Result r;
  size_t missing = 0;
  if (cache_.size() > 4096) {
    cache_.clear();
  }
  for (size_t i = 0; i < inodes.size(); ++i) {
    auto it = cache_.find(inodes[i]);
    owners[i] = it != cache_.end() ? it->second : 0;
    missing += owners[i] == 0 ? 1 : 0;
  }
  if (missing == 0) {
    r.complete = true;
    return r;
  }
  found_.clear();
  // The processes that held the app's sockets before, then every other one, newest first (the
  // app's processes usually started after most of what else runs where the sidecar can look).
  for (size_t h = 0; h < hot_.size() && missing > 0 && !r.out_of_time; ++h) {
    const int pid = hot_[h];
    if (!scanProcess(pid, inodes, owners, missing, deadline, r.out_of_time)) {
      ++r.denied;
    }
  }
  if (missing == 0) {
    r.complete = true;
    rememberFound();
    return r;
  }
  pids_.clear();
  if (DIR* proc = ::opendir(root_.c_str())) {
    while (dirent* d = ::readdir(proc)) {
      if (auto pid = parsePid(d->d_name);
          pid && *pid != self_ && pids_.size() < kMaxScanProcesses) {
        pids_.push_back(*pid);
      }
    }
    ::closedir(proc);
  }
  std::sort(pids_.begin(), pids_.end(), std::greater<>());
  // A scan the deadline cut short goes on where it stopped the next time: otherwise an app whose
  // pids lie below more processes than one budget can read (pids wrap) would never be found.
  if (resume_below_ > 0) {
    auto first = std::find_if(pids_.begin(), pids_.end(), [&](int p) { return p < resume_below_; });
    std::rotate(pids_.begin(), first, pids_.end());
  }
  r.processes = pids_.size();
  size_t scanned = 0;
  for (int pid : pids_) {
    if (missing == 0 || r.out_of_time) {
      break;
    }
    // At least one process per call, so that a resumed scan always gets further.
    if (scanned > 0 && std::chrono::steady_clock::now() >= deadline) {
      r.out_of_time = true;
      break;
    }
    ++scanned;
    if (std::find(hot_.begin(), hot_.end(), pid) == hot_.end()) {  // hot ones were read above
      bool cut = false;
      if (!scanProcess(pid, inodes, owners, missing, deadline, cut)) {
        ++r.denied;
      }
      if (cut) {
        r.out_of_time = true;
        resume_below_ = pid + 1;  // read it again next time
        break;
      }
    }
    resume_below_ = pid;
  }
  if (!r.out_of_time) {
    resume_below_ = 0;  // the next scan starts from the newest process again
  }
  rememberFound();
  r.complete = missing == 0 || (!r.out_of_time && r.denied == 0 && scanned == pids_.size() &&
                                pids_.size() < kMaxScanProcesses);
  return r;
}

}  // namespace sidetrace::filters
