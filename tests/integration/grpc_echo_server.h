#pragma once
// A real gRPC peer for the HTTP/2 tests: an in-process grpc++ server on 127.0.0.1:0 implementing
// sidetrace.test.Echo (tests/integration/proto/echo.proto: each request says how to answer —
// status, delay, reply count, trailing metadata) and grpc++'s standard grpc.health.v1.Health
// service. It records the metadata of every call (health calls apart, through a server
// interceptor) so tests can see what the proxy forwarded or sent. grpc++ headers stay in the .cc.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sidetrace::it {

// What the server saw of one Echo call.
struct EchoCallRecord {
  // "Unary", "ServerStream", "ClientStream" or "Bidi"; health calls: the path, e.g.
  // "/grpc.health.v1.Health/Check"
  std::string method;
  std::multimap<std::string, std::string> metadata;  // client metadata, lower-case keys
  std::string authority;                             // :authority as received
  std::string peer;        // e.g. "ipv4:127.0.0.1:41234": one value per upstream connection
  bool finished = false;   // the handler returned
  bool cancelled = false;  // the call was cancelled (deadline, RST_STREAM) before it finished

  // The first value of a metadata key ("" if absent).
  std::string header(const std::string& key) const;
};

struct EchoServerOptions {
  // Both set: serve TLS with this certificate (PEM files, e.g. from makeTestPki); ALPN h2.
  std::string cert_file{};
  std::string key_file{};
  std::string address = "127.0.0.1";  // an IPv4 address to listen on (port chosen by the kernel)
};

class EchoServer {
 public:
  // Starts listening at once; throws std::runtime_error if the server cannot start.
  explicit EchoServer(const EchoServerOptions& options = {});
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  uint16_t port() const;
  std::string target() const;  // "<address>:<port>"
  std::vector<EchoCallRecord> calls() const;
  // Waits until at least n calls arrived; returns all recorded calls (possibly fewer).
  std::vector<EchoCallRecord> waitForCalls(size_t n, std::chrono::milliseconds timeout);
  // Waits until at least n calls finished (handlers returned); returns all recorded calls.
  std::vector<EchoCallRecord> waitForFinished(size_t n, std::chrono::milliseconds timeout);
  // Every grpc.health.v1.Health call so far (the standard service's; finished and cancelled are
  // not tracked).
  std::vector<EchoCallRecord> healthCalls() const;
  // The health service's status for every service it knows, the overall one ("") included
  // (serving at start).
  void setServing(bool serving);
  // The status of one service name ("" = the server as a whole), leaving the others as they are.
  // A name never set is unknown to the service (its Check answers NOT_FOUND).
  void setServing(const std::string& service, bool serving);
  // Stops the server (calls in flight are cancelled after a short grace period). Idempotent.
  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sidetrace::it
