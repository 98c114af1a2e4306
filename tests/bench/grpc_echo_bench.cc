// grpc_echo_bench: the gRPC peer of the HTTP/2 benchmark (tests/bench/run.sh, MODE=h2). It serves
// only sidetrace.test.Echo/Unary (tests/integration/proto/echo.proto) with grpc++'s callback API —
// the cheapest grpc++ server, as it shares a CPU with h2load — and counts the calls it answered
// OK, so run.sh can check that every HTTP 200 h2load saw was a real gRPC call. It also writes the
// request h2load posts and makes one real grpc++ call, so the bench needs no other gRPC tool.
//
//   grpc_echo_bench serve [ADDR]          # ADDR default 127.0.0.1:50051
//     -> "grpc_echo_bench: listening on ADDR" on stderr; on SIGTERM/SIGINT
//     -> "grpc_echo_bench: calls=N" on stdout (Unary calls answered OK)
//   grpc_echo_bench frame MESSAGE         # one length-prefixed EchoRequest{message} on stdout
//   grpc_echo_bench call TARGET MESSAGE   # one Unary call (2 s deadline); exit 0 iff status OK
//                                         # and the reply echoes MESSAGE
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "echo.grpc.pb.h"

namespace {

using sidetrace::test::Echo;
using sidetrace::test::EchoReply;
using sidetrace::test::EchoRequest;

// Unary on the callback API; the other Echo methods stay on the generated sync base, which
// answers UNIMPLEMENTED.
class UnaryEcho final : public Echo::WithCallbackMethod_Unary<Echo::Service> {
 public:
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const EchoRequest* request,
                                  EchoReply* reply) override {
    reply->set_message(request->message());
    calls_.fetch_add(1, std::memory_order_relaxed);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  uint64_t calls() const { return calls_.load(); }

 private:
  std::atomic<uint64_t> calls_{0};
};

int serve(const std::string& address) {
  // Block the stop signals before gRPC starts its threads, then wait for them here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  UnaryEcho service;
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    std::fprintf(stderr, "grpc_echo_bench: cannot listen on %s\n", address.c_str());
    return 2;
  }
  std::fprintf(stderr, "grpc_echo_bench: listening on %s\n", address.c_str());
  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::printf("grpc_echo_bench: calls=%llu\n", static_cast<unsigned long long>(service.calls()));
  std::fflush(stdout);
  return 0;
}

// The gRPC message framing (PROTOCOL-HTTP2.md): a 0 "not compressed" byte, a 4-byte big-endian
// length, then the serialized message.
int frame(const std::string& message) {
  EchoRequest request;
  request.set_message(message);
  std::string body = request.SerializeAsString();
  const auto n = static_cast<uint32_t>(body.size());
  const unsigned char prefix[5] = {
      0, static_cast<unsigned char>(n >> 24), static_cast<unsigned char>(n >> 16),
      static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n)};
  if (std::fwrite(prefix, 1, sizeof prefix, stdout) != sizeof prefix ||
      std::fwrite(body.data(), 1, body.size(), stdout) != body.size() || std::fflush(stdout) != 0) {
    std::fprintf(stderr, "grpc_echo_bench: cannot write the frame\n");
    return 1;
  }
  return 0;
}

int call(const std::string& target, const std::string& message) {
  auto stub = Echo::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  EchoRequest request;
  request.set_message(message);
  EchoReply reply;
  grpc::Status status = stub->Unary(&ctx, request, &reply);
  if (!status.ok()) {
    std::fprintf(stderr, "grpc_echo_bench: %s: status %d (%s)\n", target.c_str(),
                 static_cast<int>(status.error_code()), status.error_message().c_str());
    return 1;
  }
  if (reply.message() != message) {
    std::fprintf(stderr, "grpc_echo_bench: %s: status OK but reply '%s', sent '%s'\n",
                 target.c_str(), reply.message().c_str(), message.c_str());
    return 1;
  }
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: grpc_echo_bench serve [ADDR] | frame MESSAGE | call TARGET MESSAGE\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    return usage();
  }
  const std::string cmd = argv[1];
  if (cmd == "serve" && argc <= 3) {
    return serve(argc == 3 ? argv[2] : "127.0.0.1:50051");
  }
  if (cmd == "frame" && argc == 3) {
    return frame(argv[2]);
  }
  if (cmd == "call" && argc == 4) {
    return call(argv[2], argv[3]);
  }
  return usage();
}
