#include "tests/integration/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

namespace sidetrace::it {
namespace {

sockaddr_in loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// poll() one fd for `events`, retrying on EINTR. Returns >0 ready, 0 timeout, <0 error.
int pollFd(int fd, short events, Millis timeout) {
  pollfd p{fd, events, 0};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    int rc = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (rc < 0 && errno == EINTR) {
      continue;
    }
    return rc;
  }
}

}  // namespace

namespace {

int bindRefusing(uint16_t port, const char* ipv4, bool reuse_address, uint16_t* bound) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error("socket() failed");
  }
  int one = 1;
  if (reuse_address) {
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  }
  auto addr = loopback(port);
  if (::inet_pton(AF_INET, ipv4, &addr.sin_addr) != 1 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("RefusedPort: cannot bind ") + ipv4 + ":" +
                             std::to_string(port));
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *bound = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

RefusedPort::RefusedPort() {
  fd_ = bindRefusing(0, "127.0.0.1", false, &port_);
}

RefusedPort::RefusedPort(uint16_t port, const char* ipv4) {
  fd_ = bindRefusing(port, ipv4, true, &port_);
}

RefusedPort::~RefusedPort() {
  ::close(fd_);
}

TcpSocket::~TcpSocket() {
  close();
}

TcpSocket::TcpSocket(TcpSocket&& other) noexcept : fd_(other.fd_) {
  other.fd_ = -1;
}

TcpSocket& TcpSocket::operator=(TcpSocket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

bool TcpSocket::connect(uint16_t port, Millis timeout) {
  close();
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    return false;
  }
  auto addr = loopback(port);
  int rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc != 0 && errno == EINPROGRESS) {
    if (pollFd(fd_, POLLOUT, timeout) <= 0) {
      close();
      return false;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    rc = err == 0 ? 0 : -1;
  }
  if (rc != 0) {
    close();
    return false;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return true;
}

bool TcpSocket::sendAll(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (pollFd(fd_, POLLOUT, Millis(10000)) <= 0) {
          return false;
        }
        continue;
      }
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

TcpSocket::ReadResult TcpSocket::recvSome(std::string& out, Millis timeout, size_t max) {
  if (fd_ < 0) {
    return ReadResult::Error;
  }
  int rc = pollFd(fd_, POLLIN, timeout);
  if (rc == 0) {
    return ReadResult::Timeout;
  }
  if (rc < 0) {
    return ReadResult::Error;
  }
  size_t old = out.size();
  out.resize(old + max);
  for (;;) {
    ssize_t n = ::recv(fd_, out.data() + old, max, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      out.resize(old);
      return ReadResult::Timeout;  // spurious wakeup; caller loops on its own deadline
    }
    if (n <= 0) {
      out.resize(old);
      return n == 0 || errno == ECONNRESET ? ReadResult::Closed : ReadResult::Error;
    }
    out.resize(old + static_cast<size_t>(n));
    return ReadResult::Data;
  }
}

std::string TcpSocket::readUntilClosed(Millis timeout, bool* closed) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  if (closed) {
    *closed = false;
  }
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    auto r = recvSome(out, left);
    if (r == ReadResult::Closed || r == ReadResult::Error) {
      if (closed) {
        *closed = true;
      }
      break;
    }
  }
  return out;
}

bool TcpSocket::readUntil(std::string& out, std::string_view needle, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.find(needle) == std::string::npos) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return false;
    }
    auto r = recvSome(out, left);
    if (r == ReadResult::Closed || r == ReadResult::Error) {
      return out.find(needle) != std::string::npos;
    }
  }
  return true;
}

bool TcpSocket::waitClosed(Millis timeout) {
  bool closed = false;
  readUntilClosed(timeout, &closed);
  return closed;
}

void TcpSocket::shutdownWrite() {
  if (fd_ >= 0) {
    ::shutdown(fd_, SHUT_WR);
  }
}

void TcpSocket::shutdownBoth() {
  if (fd_ >= 0) {
    ::shutdown(fd_, SHUT_RDWR);
  }
}

void TcpSocket::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

TcpListener::~TcpListener() {
  close();
}

bool TcpListener::listen(uint16_t port, const char* ipv4) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    return false;
  }
  int one = 1;
  ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto addr = loopback(port);
  if (::inet_pton(AF_INET, ipv4, &addr.sin_addr) != 1) {
    close();
    return false;
  }
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd_, 128) != 0) {
    close();
    return false;
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  return true;
}

TcpSocket TcpListener::accept(Millis timeout) {
  if (fd_ < 0 || pollFd(fd_, POLLIN, timeout) <= 0) {
    return TcpSocket();
  }
  int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) {
    return TcpSocket();
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return TcpSocket(fd);
}

void TcpListener::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace sidetrace::it
