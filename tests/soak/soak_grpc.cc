// soak_grpc: the gRPC peers of the soak run (tests/soak/run.sh), built on the integration tests'
// Echo server and client (tests/integration/grpc_echo_server.h, grpc_echo_client.h).
//
//   soak_grpc serve
//     -> "soak_grpc: listening on 127.0.0.1:PORT" on stderr; on SIGTERM/SIGINT
//     -> "soak_grpc: calls=N" on stdout (Echo calls the server saw)
//   soak_grpc load TARGET SECONDS RATE
//     Unary, ServerStream (5 replies) and Bidi (3 messages) calls in turn, RATE calls a second in
//     all, through TARGET (host:port) for SECONDS; every 50th call on a fresh channel (a new
//     HTTP/2 connection), the others on one long-lived channel. A call fails unless its status
//     is OK and every reply echoes what was sent.
//     -> "fail UNIX_MS KIND CODE MESSAGE" on stdout per failed call, as it happens
//     -> "calls KIND ok=N failed=M" on stdout per kind at the end
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/grpc_echo_client.h"
#include "tests/integration/grpc_echo_server.h"

namespace {

using sidetrace::it::EchoCall;
using sidetrace::it::EchoClient;
using sidetrace::it::EchoResult;
using sidetrace::it::EchoServer;
using sidetrace::it::GrpcTarget;
using Clock = std::chrono::steady_clock;

int serve() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before gRPC starts its threads
  EchoServer server;
  std::fprintf(stderr, "soak_grpc: listening on %s\n", server.target().c_str());
  int sig = 0;
  sigwait(&stop, &sig);
  const size_t calls = server.calls().size();
  server.shutdown();
  std::printf("soak_grpc: calls=%zu\n", calls);
  std::fflush(stdout);
  return 0;
}

struct Kind {
  const char* name;
  uint64_t ok = 0;
  uint64_t failed = 0;
};

// The reason a finished call does not count as served, or "" when it does.
std::string verdict(const EchoResult& r, const std::vector<std::string>& want) {
  if (!r.ok()) {
    return std::to_string(r.code) + " " + r.describe();
  }
  if (r.replies.size() != want.size()) {
    return "0 " + std::to_string(r.replies.size()) + " replies, want " +
           std::to_string(want.size());
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if (r.replies[i].message != want[i]) {
      return "0 reply '" + r.replies[i].message + "', want '" + want[i] + "'";
    }
  }
  return "";
}

// One call of kind `k` (0 unary, 1 server stream, 2 bidi); returns "" or why it failed.
std::string callOnce(EchoClient& client, int k, uint64_t n) {
  const std::string msg = "soak-" + std::to_string(n);
  if (k == 0) {
    return verdict(client.unary({.message = msg}), {msg});
  }
  if (k == 1) {
    std::vector<std::string> want;
    for (int i = 0; i < 5; ++i) {
      want.push_back(msg + "#" + std::to_string(i));
    }
    return verdict(client.serverStream({.message = msg, .reply_count = 5}), want);
  }
  std::vector<EchoCall> calls;
  std::vector<std::string> want;
  for (int i = 0; i < 3; ++i) {
    calls.push_back({.message = msg + "." + std::to_string(i)});
    want.push_back(msg + "." + std::to_string(i));
  }
  return verdict(client.bidi(calls), want);
}

int load(const std::string& target, double seconds, double rate) {
  Kind kinds[] = {{"grpc_unary"}, {"grpc_server_stream"}, {"grpc_bidi"}};
  auto channel = std::make_unique<EchoClient>(GrpcTarget{.address = target});
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const auto period =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
  auto next = start;
  for (uint64_t n = 0; Clock::now() < end; ++n) {
    std::this_thread::sleep_until(next);
    next += period;
    const int k = static_cast<int>(n % 3);
    std::string why;
    if (n % 50 == 49) {
      EchoClient fresh(GrpcTarget{.address = target});
      why = callOnce(fresh, k, n);
    } else {
      why = callOnce(*channel, k, n);
    }
    if (why.empty()) {
      ++kinds[k].ok;
      continue;
    }
    ++kinds[k].failed;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    std::printf("fail %lld %s %s\n", static_cast<long long>(ms), kinds[k].name, why.c_str());
    std::fflush(stdout);
  }
  for (const Kind& k : kinds) {
    std::printf("calls %s ok=%llu failed=%llu\n", k.name, static_cast<unsigned long long>(k.ok),
                static_cast<unsigned long long>(k.failed));
  }
  std::fflush(stdout);
  return 0;
}

int usage() {
  std::fprintf(stderr, "usage: soak_grpc serve | load TARGET SECONDS RATE\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "serve") {
    return serve();
  }
  if (argc == 5 && std::string(argv[1]) == "load") {
    const double seconds = std::atof(argv[3]);
    const double rate = std::atof(argv[4]);
    if (seconds <= 0 || rate <= 0) {
      return usage();
    }
    return load(argv[2], seconds, rate);
  }
  return usage();
}
