// otlp_sink: a minimal OTLP/gRPC trace collector for benchmarks. It accepts every call to
// TraceService/Export as raw bytes and answers with an empty ExportTraceServiceResponse, without
// decoding anything: it shares a CPU with the load generator, so it must cost as little as
// possible. Span counts come from sidetrace's own /metrics (sidetrace_spans_exported_total).
//
//   otlp_sink [ADDR]        # default 127.0.0.1:4317
//   -> "otlp_sink: listening on 127.0.0.1:4317" on stderr, then on SIGTERM
//   -> "otlp_sink: requests=N bytes=M" on stdout
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace {

class RawSink final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    if (ctx->method() != "/opentelemetry.proto.collector.trace.v1.TraceService/Export") {
      return CallbackGenericService::CreateReactor(ctx);  // UNIMPLEMENTED
    }
    return new Reactor(this);
  }
  uint64_t requests() const { return requests_.load(); }
  uint64_t bytes() const { return bytes_.load(); }

 private:
  // Unary over the bidi API: read the one request, write one empty message and finish.
  class Reactor final : public grpc::ServerGenericBidiReactor {
   public:
    explicit Reactor(RawSink* sink) : sink_(sink) { StartRead(&request_); }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      sink_->requests_.fetch_add(1, std::memory_order_relaxed);
      sink_->bytes_.fetch_add(request_.Length(), std::memory_order_relaxed);
      grpc::Slice empty("", 0);
      response_ = grpc::ByteBuffer(&empty, 1);
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void OnDone() override { delete this; }

   private:
    RawSink* sink_;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer response_;
  };

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_{0};
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

  RawSink sink;
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  builder.RegisterCallbackGenericService(&sink);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    std::fprintf(stderr, "otlp_sink: cannot listen on %s\n", address.c_str());
    return 2;
  }
  std::fprintf(stderr, "otlp_sink: listening on %s\n", address.c_str());
  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::printf("otlp_sink: requests=%llu bytes=%llu\n",
              static_cast<unsigned long long>(sink.requests()),
              static_cast<unsigned long long>(sink.bytes()));
  std::fflush(stdout);
  return 0;
}
