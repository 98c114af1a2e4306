#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "config/url.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "tracing/export_retry.h"
#include "tracing/exporter.h"
#include "tracing/log.h"

namespace sidetrace::tracing {

namespace {

namespace collector = opentelemetry::proto::collector::trace::v1;
using SteadyClock = std::chrono::steady_clock;

// The request arrives already serialized (otlp_encode.h), so the call goes through grpc++'s
// generic stub with raw bytes instead of the generated stub, which would want a message object.
const std::string kExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

// The OTLP spec's retryable gRPC codes; anything else (e.g. INVALID_ARGUMENT) will not get better.
bool retryable(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::DATA_LOSS:
      return true;
    default:
      return false;
  }
}

// gRPC aborts or fails the call on metadata it considers invalid: check at startup instead.
bool validMetadataKey(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  });
}

bool validMetadataValue(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// A startup-time read (exit 2 on failure, like an unreadable listener certificate).
std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty()) {
    throw std::runtime_error("tracing.exporter.tls.ca_file: cannot read " + path);
  }
  return text.str();
}

class OtlpGrpcExporter final : public SpanExporter {
 public:
  explicit OtlpGrpcExporter(const config::ExporterConfig& cfg)
      : timeout_(std::max(cfg.timeout, config::Duration{1})),
        gzip_(cfg.compression == "gzip"),
        rng_(std::random_device{}()) {
    // Validated with the config; empty only when a caller skipped validation (tests).
    const config::GrpcEndpoint target = cfg.endpoint.empty()
                                            ? config::GrpcEndpoint{"localhost:4317", false}
                                            : config::parseGrpcEndpoint(cfg.endpoint);
    grpc::SslCredentialsOptions ssl;
    if (target.tls && !cfg.tls.ca_file.empty()) {
      ssl.pem_root_certs = readFile(cfg.tls.ca_file);  // else gRPC's default roots
    }
    auto creds = target.tls ? grpc::SslCredentials(ssl) : grpc::InsecureChannelCredentials();
    grpc::ChannelArguments args;
    args.SetUserAgentPrefix("sidetrace/" SIDETRACE_VERSION);
    // gRPC's reconnect back-off grows to 120 s by default: after a long collector outage, export
    // would resume minutes after the collector is back. Cap it so export resumes within seconds.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
    // Export retries are ours (send(): retryable codes, back-off, the export timeout); gRPC's own
    // retry layer would only add its per-call bookkeeping (~6% of an export call's instructions).
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    stub_ =
        std::make_unique<grpc::GenericStub>(grpc::CreateCustomChannel(target.target, creds, args));
    for (const auto& [key, value] : cfg.headers) {
      std::string lower(key);
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (!validMetadataKey(lower) || !validMetadataValue(value)) {
        log().warn("otlp exporter: header '{}' is not valid gRPC metadata; not sent", key);
        continue;
      }
      headers_.emplace_back(std::move(lower), value);
    }
    log().info("otlp exporter: gRPC to {} ({}{})", target.target, target.tls ? "tls" : "plaintext",
               gzip_ ? ", gzip" : "");
  }

  ~OtlpGrpcExporter() override {
    cq_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  ExportResult exportSpans(std::string_view request, size_t span_count) override {
    if (span_count == 0) {
      return ExportResult::Success;
    }
    grpc::Slice slice(request.data(), request.size());  // one copy into gRPC-owned memory
    return send(grpc::ByteBuffer(&slice, 1), span_count);
  }

  // The framing is copied (a few dozen bytes); each batch goes as a slice of the worker's buffer,
  // which the slice keeps alive until gRPC has written it.
  ExportResult exportFramed(const FramedSpans& request) override {
    if (request.span_count == 0) {
      return ExportResult::Success;
    }
    slices_.clear();
    slices_.emplace_back(request.head.data(), request.head.size());
    for (const SpanBatch& b : request.batches) {
      auto* owner = new std::shared_ptr<const void>(b.owner);
      slices_.emplace_back(const_cast<char*>(b.bytes.data()), b.bytes.size(), &releaseOwner, owner);
    }
    grpc::ByteBuffer buffer(slices_.data(), slices_.size());
    slices_.clear();  // the buffer holds its own references
    return send(buffer, request.span_count);
  }

 private:
  static void releaseOwner(void* owner) { delete static_cast<std::shared_ptr<const void>*>(owner); }

  ExportResult send(const grpc::ByteBuffer& request_buffer, size_t span_count) {
    const auto deadline = std::min(SteadyClock::now() + timeout_, deadline_);
    ExportBackoff backoff(rng_);
    int attempts = 0;
    while (true) {
      ++attempts;
      grpc::ClientContext ctx;
      // grpc++ takes system_clock deadlines only; the budget itself is measured on steady_clock.
      ctx.set_deadline(std::chrono::system_clock::now() + (deadline - SteadyClock::now()));
      for (const auto& [key, value] : headers_) {
        ctx.AddMetadata(key, value);
      }
      if (gzip_) {
        ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
      }
      grpc::Status status = call(ctx, request_buffer);
      if (status.ok()) {
        if (response_.has_partial_success() && response_.partial_success().rejected_spans() > 0) {
          rejected_spans_ += static_cast<uint64_t>(response_.partial_success().rejected_spans());
          warn_.warn("otlp exporter: collector rejected {} of {} span(s): {}",
                     response_.partial_success().rejected_spans(), span_count,
                     response_.partial_success().error_message());
        }
        return ExportResult::Success;
      }
      auto sleep = backoff.next();
      if (!retryable(status.error_code()) || SteadyClock::now() + sleep >= deadline) {
        warn_.warn("otlp exporter: export of {} span(s) failed after {} attempt(s): {} ({})",
                   span_count, attempts, status.error_message(),
                   static_cast<int>(status.error_code()));
        return ExportResult::Failure;
      }
      std::this_thread::sleep_for(sleep);
    }
  }

  // One blocking unary call on the exporter's own completion queue; fills response_.
  grpc::Status call(grpc::ClientContext& ctx, const grpc::ByteBuffer& request) {
    grpc::ByteBuffer reply;
    grpc::Status status;
    auto rpc = stub_->PrepareUnaryCall(&ctx, kExportMethod, request, &cq_);
    rpc->StartCall();
    rpc->Finish(&reply, &status, this);
    void* tag = nullptr;
    bool ok = false;
    if (!cq_.Next(&tag, &ok) || tag != this) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "completion queue shut down");
    }
    response_.Clear();
    if (status.ok()) {
      std::vector<grpc::Slice> slices;
      std::string bytes;
      if (reply.Dump(&slices).ok()) {
        for (const auto& s : slices) {
          bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
      }
      if (!response_.ParseFromString(bytes)) {
        response_.Clear();  // an unreadable reply still means the spans were accepted
      }
    }
    return status;
  }

  std::vector<grpc::Slice> slices_;  // a request's pieces while the ByteBuffer is built
  std::unique_ptr<grpc::GenericStub> stub_;
  grpc::CompletionQueue cq_;  // one call at a time: the export thread waits on it
  std::vector<std::pair<std::string, std::string>> headers_;
  std::chrono::milliseconds timeout_;
  bool gzip_;
  std::mt19937 rng_;
  collector::ExportTraceServiceResponse response_;
  WarnLimiter warn_;
};

}  // namespace

std::unique_ptr<SpanExporter> makeOtlpGrpcExporter(const config::ExporterConfig& cfg) {
  return std::make_unique<OtlpGrpcExporter>(cfg);
}

}  // namespace sidetrace::tracing
