#pragma once
// Blocking POSIX TCP helpers for the integration harness. Every read takes a timeout (poll), so a
// proxy that hangs fails a test instead of hanging it. Not for production use: one thread per
// socket, no async.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace sidetrace::it {

using Millis = std::chrono::milliseconds;

class TcpSocket {
 public:
  TcpSocket() = default;
  explicit TcpSocket(int fd) : fd_(fd) {}
  ~TcpSocket();
  TcpSocket(TcpSocket&& other) noexcept;
  TcpSocket& operator=(TcpSocket&& other) noexcept;
  TcpSocket(const TcpSocket&) = delete;
  TcpSocket& operator=(const TcpSocket&) = delete;

  // Connects to 127.0.0.1:port. Returns false on failure (e.g. connection refused).
  bool connect(uint16_t port, Millis timeout = Millis(3000));
  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // Sends everything; false if the peer closed or an error occurred.
  bool sendAll(std::string_view data);
  enum class ReadResult { Data, Closed, Timeout, Error };
  // Appends up to max bytes to out once some are available.
  ReadResult recvSome(std::string& out, Millis timeout, size_t max = 64 * 1024);
  // Reads until the peer closes or the timeout passes; returns what was read. *closed tells which.
  std::string readUntilClosed(Millis timeout, bool* closed = nullptr);
  // Reads until `out` contains `needle` (or timeout/close). Returns true if found.
  bool readUntil(std::string& out, std::string_view needle, Millis timeout);
  // After a response: true if the peer closes (EOF or RST) within timeout, discarding data.
  bool waitClosed(Millis timeout);
  void shutdownWrite();
  // shutdown(SHUT_RDWR): wakes a thread blocked on this socket (safe from another thread).
  void shutdownBoth();
  void close();

 private:
  int fd_ = -1;
};

// A listening socket on 127.0.0.1 (port 0 = ephemeral).
class TcpListener {
 public:
  TcpListener() = default;
  ~TcpListener();
  // On 127.0.0.1, or another IPv4 address (any of 127.0.0.0/8 is loopback on Linux).
  bool listen(uint16_t port = 0, const char* ipv4 = "127.0.0.1");
  uint16_t port() const { return port_; }
  // Waits up to timeout for a connection; invalid socket on timeout or after close().
  TcpSocket accept(Millis timeout);
  void close();

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A port on 127.0.0.1 that refuses connections (a "dead" upstream or collector): a socket bound
// and never listening, held until destroyed. A released port could meanwhile go to any test's
// peer — sidetrace and grpc++ bind with SO_REUSEPORT, so they would even share it.
class RefusedPort {
 public:
  RefusedPort();  // an ephemeral port, held exclusively
  // Keeps `port` after its listener closed (SO_REUSEADDR, so connections of that listener still
  // in TIME_WAIT do not prevent it; a later listener that wants the port back may still bind it).
  // Throws std::runtime_error when it cannot be bound.
  explicit RefusedPort(uint16_t port, const char* ipv4 = "127.0.0.1");
  ~RefusedPort();
  RefusedPort(const RefusedPort&) = delete;
  RefusedPort& operator=(const RefusedPort&) = delete;
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

}  // namespace sidetrace::it
