// otlp_sink: a minimal OTLP/gRPC trace collector for benchmarks. It accepts every call to
// TraceService/Export as raw bytes and answers with an empty ExportTraceServiceResponse, without
// decoding anything: it shares a CPU with the load generator, so it must cost as little as
// possible. Span counts come from sidetrace's own /metrics (sidetrace_spans_exported_total).
// Two faults for the collector-fault benchmarks (tests/bench/run.sh traced_slow, traced_errors):
//
//   otlp_sink [--delay-ms N] [--fail CODE] [--count-spans] [ADDR]   # ADDR default 127.0.0.1:4317
//     --delay-ms N   answer every Export N ms after it arrived (a slow collector); calls are not
//                    serialized: each waits on its own gRPC alarm, no thread sleeps
//     --fail CODE    answer every Export with this status instead of OK: unavailable,
//                    resource_exhausted (both retryable for an OTLP exporter) or invalid_argument
//     --count-spans  count the spans in each request it answers OK (a walk of the protobuf wire
//                    format, no decoding into messages), for the soak's span accounting
//   -> "otlp_sink: listening on 127.0.0.1:4317 port 4317" on stderr (the bound port: ADDR may end
//      in :0), then on SIGTERM
//   -> "otlp_sink: requests=N bytes=M" on stdout (with --count-spans: " spans=S answered=A",
//      S spans in the A requests it answered OK)
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
#include <vector>

namespace {

struct Options {
  std::string address = "127.0.0.1:4317";
  std::chrono::milliseconds delay{0};
  grpc::StatusCode answer = grpc::StatusCode::OK;
  bool count_spans = false;
};

// The protobuf wire format, just enough to count spans: ExportTraceServiceRequest.resource_spans
// (1) → ResourceSpans.scope_spans (2) → ScopeSpans.spans (2). Returns false on malformed input.
bool readVarint(const uint8_t*& p, const uint8_t* end, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    const uint8_t b = *p++;
    v |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80u) == 0) {
      return true;
    }
  }
  return false;
}

// Calls `on_field(number, payload, size)` for each length-delimited field; skips the others.
template <typename F>
bool forEachLengthField(const uint8_t* p, const uint8_t* end, F&& on_field) {
  while (p < end) {
    uint64_t key = 0;
    uint64_t len = 0;
    if (!readVarint(p, end, key)) {
      return false;
    }
    switch (key & 7u) {
      case 0:
        if (!readVarint(p, end, len)) {
          return false;
        }
        break;
      case 1:
      case 5: {
        const ptrdiff_t width = (key & 7u) == 1 ? 8 : 4;
        if (end - p < width) {
          return false;
        }
        p += width;
        break;
      }
      case 2:
        if (!readVarint(p, end, len) || len > static_cast<uint64_t>(end - p)) {
          return false;
        }
        if (!on_field(key >> 3, p, static_cast<size_t>(len))) {
          return false;
        }
        p += len;
        break;
      default:
        return false;
    }
  }
  return true;
}

// Spans in one serialized ExportTraceServiceRequest, or -1 if it is not one.
int64_t countSpans(const std::string& request) {
  const auto* begin = reinterpret_cast<const uint8_t*>(request.data());
  int64_t spans = 0;
  auto scope_spans = [&](uint64_t field, const uint8_t*, size_t) {
    spans += field == 2 ? 1 : 0;  // Span
    return true;
  };
  auto resource_spans = [&](uint64_t field, const uint8_t* p, size_t n) {
    return field != 2 || forEachLengthField(p, p + n, scope_spans);  // ScopeSpans
  };
  auto request_fields = [&](uint64_t field, const uint8_t* p, size_t n) {
    return field != 1 || forEachLengthField(p, p + n, resource_spans);  // ResourceSpans
  };
  return forEachLengthField(begin, begin + request.size(), request_fields) ? spans : -1;
}

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
  uint64_t spans() const { return spans_.load(); }
  uint64_t answered() const { return answered_.load(); }
  uint64_t malformed() const { return malformed_.load(); }

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
      if (sink_->opts_.count_spans) {
        spans_ = countSpans(flatten(request_));
        if (spans_ < 0) {
          sink_->malformed_.fetch_add(1, std::memory_order_relaxed);
        }
      }
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
      if (spans_ > 0) {
        sink_->spans_.fetch_add(static_cast<uint64_t>(spans_), std::memory_order_relaxed);
      }
      sink_->answered_.fetch_add(1, std::memory_order_relaxed);
      grpc::Slice empty("", 0);
      response_ = grpc::ByteBuffer(&empty, 1);
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    }

    static std::string flatten(const grpc::ByteBuffer& buffer) {
      std::vector<grpc::Slice> slices;
      std::string out;
      if (buffer.Dump(&slices).ok()) {
        for (const grpc::Slice& slice : slices) {
          out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
        }
      }
      return out;
    }

    RawSink* sink_;
    int64_t spans_ = 0;
    grpc::ByteBuffer request_;
    grpc::ByteBuffer response_;
    grpc::Alarm alarm_;
  };

  const Options opts_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> spans_{0};     // in requests answered OK (--count-spans)
  std::atomic<uint64_t> answered_{0};  // requests answered OK
  std::atomic<uint64_t> malformed_{0};
};

[[noreturn]] void usageError(const char* what) {
  std::fprintf(stderr,
               "otlp_sink: %s\nusage: otlp_sink [--delay-ms N] [--fail unavailable|"
               "resource_exhausted|invalid_argument] [--count-spans] [ADDR]\n",
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
    } else if (std::strcmp(arg, "--count-spans") == 0) {
      o.count_spans = true;
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
  std::printf("otlp_sink: requests=%llu bytes=%llu",
              static_cast<unsigned long long>(sink.requests()),
              static_cast<unsigned long long>(sink.bytes()));
  if (opts.count_spans) {
    std::printf(" spans=%llu answered=%llu malformed=%llu",
                static_cast<unsigned long long>(sink.spans()),
                static_cast<unsigned long long>(sink.answered()),
                static_cast<unsigned long long>(sink.malformed()));
  }
  std::printf("\n");
  std::fflush(stdout);
  return 0;
}
