// otlp_sink: a minimal OTLP/gRPC trace collector for benchmarks. It accepts every call to
// TraceService/Export as raw bytes and answers with an empty ExportTraceServiceResponse, without
// decoding anything: it shares a CPU with the load generator, so it must cost as little as
// possible. Span counts come from sidetrace's own /metrics (sidetrace_spans_exported_total).
// Two faults for the collector-fault benchmarks (tests/bench/run.sh traced_slow, traced_errors):
//
//   otlp_sink [--delay-ms N] [--fail CODE] [ADDR]     # ADDR default 127.0.0.1:4317
//     --delay-ms N   answer every Export N ms after it arrived (a slow collector); calls are not
//                    serialized: each waits on its own gRPC alarm, no thread sleeps
//     --fail CODE    answer every Export with this status instead of OK: unavailable,
//                    resource_exhausted (both retryable for an OTLP exporter) or invalid_argument
//   -> "otlp_sink: listening on 127.0.0.1:4317 port 4317" on stderr (the bound port: ADDR may end
//      in :0), then on SIGTERM
//   -> "otlp_sink: requests=N bytes=M" on stdout
#include <grpcpp/alarm.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace {

struct Options {
  std::string address = "127.0.0.1:4317";
  std::chrono::milliseconds delay{0};
  grpc::StatusCode answer = grpc::StatusCode::OK;
};

class RawSink final : public grpc::CallbackGenericService {
 public:
  explicit RawSink(const Options& opts) : opts_(opts) {}
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    if (ctx->method() != "/opentelemetry.proto.collector.trace.v1.TraceService/Export") {
      return CallbackGenericService::CreateReactor(ctx);  // UNIMPLEMENTED
    }
    return new Reactor(this);
  }
  uint64_t requests() const { return requests_.load(); }
  uint64_t bytes() const { return bytes_.load(); }

 private:
  // Unary over the bidi API: read the one request, write one empty message and finish (after
  // the configured delay, with the configured status).
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
      request_.Clear();  // a slow sink holding every batch would measure its own memory
      if (sink_->opts_.delay.count() > 0) {
        // The reactor stays alive until OnDone, which cannot come before Finish: the alarm (a
        // member) is safe to fire into. Fired early (ok false) only on server shutdown.
        alarm_.Set(std::chrono::system_clock::now() + sink_->opts_.delay,
                   [this](bool) { answer(); });
      } else {
        answer();
      }
    }
    void OnDone() override { delete this; }

   private:
    void answer() {
      if (sink_->opts_.answer != grpc::StatusCode::OK) {
        Finish(grpc::Status(sink_->opts_.answer, "otlp_sink: configured to fail"));
        return;
      }
      grpc::Slice empty("", 0);
      response_ = grpc::ByteBuffer(&empty, 1);
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    }

    RawSink* sink_;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer response_;
    grpc::Alarm alarm_;
  };

  const Options opts_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_{0};
};

[[noreturn]] void usageError(const char* what) {
  std::fprintf(stderr,
               "otlp_sink: %s\nusage: otlp_sink [--delay-ms N] [--fail unavailable|"
               "resource_exhausted|invalid_argument] [ADDR]\n",
               what);
  std::exit(2);
}

Options parseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    if (std::strcmp(arg, "--delay-ms") == 0 && i + 1 < argc) {
      char* end = nullptr;
      long ms = std::strtol(argv[++i], &end, 10);
      if (end == argv[i] || *end != '\0' || ms < 0) {
        usageError("--delay-ms: expected a non-negative integer");
      }
      o.delay = std::chrono::milliseconds(ms);
    } else if (std::strcmp(arg, "--fail") == 0 && i + 1 < argc) {
      std::string code = argv[++i];
      if (code == "unavailable") {
        o.answer = grpc::StatusCode::UNAVAILABLE;
      } else if (code == "resource_exhausted") {
        o.answer = grpc::StatusCode::RESOURCE_EXHAUSTED;
      } else if (code == "invalid_argument") {
        o.answer = grpc::StatusCode::INVALID_ARGUMENT;
      } else {
        usageError("--fail: unknown status");
      }
    } else if (arg[0] == '-') {
      usageError("unknown option or missing value");
    } else {
      o.address = arg;
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opts = parseOptions(argc, argv);
  const std::string& address = opts.address;
  // Block the stop signals before gRPC starts its threads, then wait for them here.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  RawSink sink(opts);
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
  std::fprintf(stderr, "otlp_sink: listening on %s port %d (delay %lld ms, answer %s)\n",
               address.c_str(), bound_port, static_cast<long long>(opts.delay.count()),
               opts.answer == grpc::StatusCode::OK ? "OK" : "an error");
  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::printf("otlp_sink: requests=%llu bytes=%llu\n",
              static_cast<unsigned long long>(sink.requests()),
              static_cast<unsigned long long>(sink.bytes()));
  std::fflush(stdout);
  return 0;
}
