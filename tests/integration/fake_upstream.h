#pragma once
// A real HTTP/1.1 origin server on 127.0.0.1:0 for integration tests (Envoy's FakeUpstream idea):
// one thread per connection, keep-alive, records every request, and answers per path with a
// scripted behaviour (echo, fixed, chunked, stall, close, large body, 101 upgrade + echo tunnel).
// Optionally TLS (OpenSSL, server side): then it records what each handshake carried.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/http_client.h"
#include "tests/integration/net.h"

namespace sidetrace::it {

struct RecordedRequest {
  std::string method;
  std::string target;
  int version = 0;  // 10 or 11
  Headers headers;  // wire order, names as received
  std::string body;
  bool chunked = false;        // arrived with Transfer-Encoding: chunked
  Headers trailers;            // chunked: the trailer section's fields, wire order
  uint64_t connection_id = 0;  // which upstream connection carried it
  // TLS upstreams only: what the connection's handshake carried.
  std::string tls_sni;           // server name the client sent ("" if none)
  std::string tls_alpn_offered;  // the client's ALPN list, comma-separated ("" if none)
  std::string tls_alpn;          // the protocol chosen (http/1.1 when offered, else none)
  std::string tls_client_cn;     // CN of the client certificate ("" if none)
  bool tls_resumed = false;      // the handshake resumed an earlier session

  std::optional<std::string> header(std::string_view name) const;
  size_t headerCount(std::string_view name) const;
  bool hasHeader(std::string_view name) const { return headerCount(name) > 0; }
};

struct Behavior {
  enum class Kind {
    Echo,        // status 200, body = request body, x-echo-method / x-echo-target headers
    Fixed,       // status + body + headers
    Chunked,     // status + body sent with Transfer-Encoding: chunked in `chunks` pieces, then
                 // `trailers` in the trailer section
    Stall,       // wait `delay` (or until stop), then act like Fixed
    Close,       // read the request, close without a response
    Large,       // status 200 with `large_bytes` of patternByte(i), streamed
    Upgrade,     // 101 Switching Protocols, then echo raw bytes until close
    Sink,        // read and discard the body (no size limit, never stored); status 200 with the
                 // body byte count as the response body and in x-sink-bytes
    EarlyReply,  // status + body as soon as the head is in, before the request body (as a
                 // server refusing an upload does); then read and discard until the peer closes
    CloseIdle,   // like Fixed (keep-alive, nothing says close), then close the connection when
                 // `delay` passes without a next request (a server's keep-alive idle timeout)
  };
  Kind kind = Kind::Echo;
  int status = 200;
  std::string body;
  Headers headers;
  std::chrono::milliseconds delay{0};
  size_t chunks = 3;
  uint64_t large_bytes = 0;
  Headers trailers;

  static Behavior echo() { return {}; }
  static Behavior fixed(int status, std::string body, Headers headers = {});
  static Behavior chunked(std::string body, size_t chunks = 3, Headers trailers = {});
  static Behavior stall(std::chrono::milliseconds delay, int status = 200);
  static Behavior close();
  static Behavior large(uint64_t bytes);
  static Behavior upgrade();
  static Behavior sink();
  static Behavior earlyReply(int status, std::string body);
  static Behavior closeIdle(std::chrono::milliseconds idle, int status = 200,
                            std::string body = "ok");
};

// The byte at offset i of a Large body (deterministic, not periodic at powers of two).
inline char patternByte(uint64_t i) {
  return static_cast<char>((i * 131 + i / 251) & 0xff);
}

// Server-side TLS for a FakeUpstream (TLS 1.2+, session resumption on).
struct FakeUpstreamTls {
  std::string cert_file;  // PEM certificate and key
  std::string key_file;
  std::string client_ca;  // "": no client certificate asked for; else required, verified with it
  int max_version = 0;    // 0: TLS 1.3; e.g. TLS1_2_VERSION to test a TLS 1.2-only origin
};

class FakeUpstream {
 public:
  FakeUpstream();  // starts listening and serving on an ephemeral port
  // The same on ipv4:port (port 0: ephemeral); throws std::runtime_error when it cannot bind.
  FakeUpstream(const std::string& ipv4, uint16_t port);
  // The same, speaking TLS. Throws std::runtime_error when the files do not load.
  explicit FakeUpstream(const FakeUpstreamTls& tls);
  ~FakeUpstream();
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  uint16_t port() const { return port_; }
  // Behaviour for requests whose path (target without query) equals / starts with `path`.
  void on(const std::string& path, Behavior b);
  void onPrefix(const std::string& prefix, Behavior b);
  void setDefault(Behavior b);

  std::vector<RecordedRequest> requests() const;
  size_t requestCount() const;
  size_t connectionCount() const { return connections_.load(); }
  // Waits until at least n requests were recorded; returns all recorded.
  std::vector<RecordedRequest> waitForRequests(size_t n, std::chrono::milliseconds timeout);
  // Total raw bytes received over all connections (catches a request that failed to parse).
  uint64_t bytesReceived() const { return bytes_received_.load(); }
  // TLS: connections whose handshake failed (the client refused us, or we refused it).
  size_t tlsHandshakeFailures() const { return tls_failures_.load(); }

  // Stops accepting and closes every connection. After stop() the port refuses connections and
  // stays held (RefusedPort) until the FakeUpstream is destroyed.
  void stop();

 private:
  void acceptLoop();
  void serve(TcpSocket sock, uint64_t id);
  Behavior behaviorFor(const std::string& target) const;
  bool sleepUnlessStopped(std::chrono::milliseconds d);

  TcpListener listener_;
  std::string ipv4_ = "127.0.0.1";
  uint16_t port_ = 0;
  std::optional<RefusedPort> refused_;  // after stop()
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> connections_{0};
  std::atomic<uint64_t> bytes_received_{0};
  std::atomic<size_t> tls_failures_{0};
  struct TlsContext;
  std::shared_ptr<TlsContext> tls_;  // null: plain TCP
  std::thread acceptor_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Behavior> exact_;
  std::vector<std::pair<std::string, Behavior>> prefixes_;
  Behavior default_;
  std::vector<RecordedRequest> requests_;
  std::vector<std::thread> workers_;
  std::vector<int> open_fds_;
};

}  // namespace sidetrace::it
