// otlp_sink: a minimal OTLP/gRPC trace collector for benchmarks. It accepts every Export call,
// counts requests and spans, and prints the totals on SIGTERM/SIGINT. No decoding beyond counting,
// so it costs the CPU it is pinned to as little as possible.
//
//   otlp_sink [ADDR]        # default 127.0.0.1:4317
//   -> "otlp_sink: listening on 127.0.0.1:4317" on stderr, then on SIGTERM
//   -> "otlp_sink: requests=N spans=M" on stdout

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"

namespace {

namespace otlp = opentelemetry::proto::collector::trace::v1;

class TraceSink final : public otlp::TraceService::Service {
 public:
  grpc::Status Export(grpc::ServerContext*, const otlp::ExportTraceServiceRequest* request,
                      otlp::ExportTraceServiceResponse*) override {
    uint64_t n = 0;
    for (const auto& rs : request->resource_spans()) {
      for (const auto& ss : rs.scope_spans()) n += static_cast<uint64_t>(ss.spans_size());
    }
    spans_.fetch_add(n, std::memory_order_relaxed);
    requests_.fetch_add(1, std::memory_order_relaxed);
    return grpc::Status::OK;
  }

  uint64_t spans() const { return spans_.load(); }
  uint64_t requests() const { return requests_.load(); }

 private:
  std::atomic<uint64_t> spans_{0};
  std::atomic<uint64_t> requests_{0};
};

}  // namespace

int main(int argc, char** argv) {
  const std::string address = argc > 1 ? argv[1] : "127.0.0.1:4317";

  // Block the stop signals before gRPC starts its threads, then wait for them here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  TraceSink sink;
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  builder.RegisterService(&sink);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    std::fprintf(stderr, "otlp_sink: cannot listen on %s\n", address.c_str());
    return 2;
  }
  std::fprintf(stderr, "otlp_sink: listening on %s\n", address.c_str());

  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::printf("otlp_sink: requests=%llu spans=%llu\n",
              static_cast<unsigned long long>(sink.requests()),
              static_cast<unsigned long long>(sink.spans()));
  std::fflush(stdout);
  return 0;
}
