#pragma once
// A grpc++ client for sidetrace.test.Echo and grpc.health.v1.Health (the peers of
// grpc_echo_server.h): runs each call kind to completion against "host:port" — directly or through
// the proxy, plaintext (h2c) or TLS — and returns the status, replies and metadata as plain
// values. One EchoClient is one channel (one HTTP/2 connection), safe to use from many threads.
// grpc++ headers stay in the .cc.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sidetrace::it {

struct GrpcTarget {
  std::string address{};  // "127.0.0.1:<port>"
  // Non-empty: TLS (ALPN h2) verifying the server against this CA (PEM file).
  std::string ca_file{};
  // TLS: the name sent as SNI, verified against the certificate and used as :authority (e.g.
  // "localhost" while address is an IP).
  std::string server_name{};
  // Plaintext: the :authority to send instead of address's (a client whose proxy is `address`).
  std::string authority{};
};

// One EchoRequest (see echo.proto for how the server honours each field). Meant for designated
// initializers: every member has a default, `{}` included (GCC's -Wmissing-field-initializers).
struct EchoCall {
  std::string message{};
  int status_code = 0;  // non-zero: the server ends the call with it
  std::string status_message{};
  int delay_ms = 0;
  int reply_count = 0;  // ServerStream only; 0 counts as 1
  std::map<std::string, std::string> trailing_metadata{};
};

struct CallOptions {
  std::chrono::milliseconds deadline{10000};
  std::multimap<std::string, std::string> metadata{};  // sent with the call (lower-case keys)
};

struct EchoReplyData {
  std::string message;
  int index = 0;
  std::string traceparent;                      // as the server received it
  std::map<std::string, std::string> metadata;  // text metadata the server received
  std::string authority;
};

struct EchoResult {
  int code = -1;  // grpc::StatusCode
  std::string message;
  std::vector<EchoReplyData> replies;
  std::multimap<std::string, std::string> initial_metadata;
  std::multimap<std::string, std::string> trailing_metadata;

  bool ok() const { return code == 0; }
  std::string trailer(const std::string& key) const;  // first value, "" if absent
  std::string describe() const;                       // one line for assertion messages
};

struct HealthResult {
  int code = -1;  // grpc::StatusCode of the call
  std::string message;
  int serving_status = 0;  // 1 SERVING, 2 NOT_SERVING (HealthCheckResponse.status)
};

class EchoClient {
 public:
  explicit EchoClient(const GrpcTarget& target);
  ~EchoClient();
  EchoClient(const EchoClient&) = delete;
  EchoClient& operator=(const EchoClient&) = delete;

  EchoResult unary(const EchoCall& call, const CallOptions& options = {});
  EchoResult serverStream(const EchoCall& call, const CallOptions& options = {});
  // Sends every request, half-closes, then waits for the one reply.
  EchoResult clientStream(const std::vector<EchoCall>& calls, const CallOptions& options = {});
  // Sends each request and reads its echo before sending the next (ping-pong), half-closes,
  // then reads whatever is left.
  EchoResult bidi(const std::vector<EchoCall>& calls, const CallOptions& options = {});
  // /grpc.health.v1.Health/Check for `service` ("" = the server as a whole).
  HealthResult healthCheck(const std::string& service = "", const CallOptions& options = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Name of a grpc::StatusCode, e.g. "DEADLINE_EXCEEDED" (for messages).
std::string grpcCodeName(int code);

}  // namespace sidetrace::it
