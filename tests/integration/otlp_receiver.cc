#include "tests/integration/otlp_receiver.h"

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"
#include "tests/integration/net.h"

namespace sidetrace::it {

namespace otlp_collector = opentelemetry::proto::collector::trace::v1;
namespace otlp_common = opentelemetry::proto::common::v1;

std::string toHex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::vector<FlatSpan> spansOfKind(const std::vector<FlatSpan>& spans, int kind) {
  std::vector<FlatSpan> out;
  for (const auto& s : spans) {
    if (s.kind == kind) {
      out.push_back(s);
    }
  }
  return out;
}

const FlatSpan* clientSpanWithUrl(const std::vector<FlatSpan>& spans, const std::string& part) {
  for (const auto& s : spans) {
    if (s.kind == 3 && s.str("url.full").find(part) != std::string::npos) {
      return &s;
    }
  }
  return nullptr;
}

namespace {

AttrValue convert(const otlp_common::AnyValue& v) {
  AttrValue a;
  switch (v.value_case()) {
    case otlp_common::AnyValue::kStringValue:
      a.type = AttrValue::Type::String;
      a.s = v.string_value();
      break;
    case otlp_common::AnyValue::kBoolValue:
      a.type = AttrValue::Type::Bool;
      a.b = v.bool_value();
      break;
    case otlp_common::AnyValue::kIntValue:
      a.type = AttrValue::Type::Int;
      a.i = v.int_value();
      break;
    case otlp_common::AnyValue::kDoubleValue:
      a.type = AttrValue::Type::Double;
      a.d = v.double_value();
      break;
    case otlp_common::AnyValue::kArrayValue:
      a.type = AttrValue::Type::StringArray;
      for (const auto& item : v.array_value().values()) {
        if (item.value_case() != otlp_common::AnyValue::kStringValue) {
          a.type = AttrValue::Type::Other;
        }
        a.strings.push_back(item.string_value());
      }
      break;
    default:
      break;
  }
  return a;
}

template <typename KVs>
Attributes convertAll(const KVs& kvs) {
  Attributes out;
  for (const auto& kv : kvs) {
    out[kv.key()] = convert(kv.value());
  }
  return out;
}

std::string attrText(const AttrValue& v) {
  switch (v.type) {
    case AttrValue::Type::String:
      return "\"" + v.s + "\"";
    case AttrValue::Type::Bool:
      return v.b ? "true" : "false";
    case AttrValue::Type::Int:
      return std::to_string(v.i);
    case AttrValue::Type::Double:
      return std::to_string(v.d);
    case AttrValue::Type::StringArray: {
      std::string out = "[";
      for (size_t i = 0; i < v.strings.size(); ++i) {
        out += (i == 0 ? "\"" : ", \"") + v.strings[i] + "\"";
      }
      return out + "]";
    }
    default:
      return "?";
  }
}

void appendFlat(const otlp_collector::ExportTraceServiceRequest& req, std::vector<FlatSpan>& out) {
  for (const auto& rs : req.resource_spans()) {
    Attributes resource = convertAll(rs.resource().attributes());
    for (const auto& ss : rs.scope_spans()) {
      for (const auto& s : ss.spans()) {
        FlatSpan f;
        f.trace_id = toHex(s.trace_id());
        f.span_id = toHex(s.span_id());
        f.parent_span_id = toHex(s.parent_span_id());
        f.trace_state = s.trace_state();
        f.name = s.name();
        f.kind = static_cast<int>(s.kind());
        f.status_code = static_cast<int>(s.status().code());
        f.status_message = s.status().message();
        f.start_ns = s.start_time_unix_nano();
        f.end_ns = s.end_time_unix_nano();
        f.flags = s.flags();
        f.dropped_attributes_count = s.dropped_attributes_count();
        f.attributes = convertAll(s.attributes());
        for (const auto& l : s.links()) {
          f.links.emplace_back(toHex(l.trace_id()), toHex(l.span_id()));
        }
        f.resource = resource;
        f.scope_name = ss.scope().name();
        out.push_back(std::move(f));
      }
    }
  }
}

}  // namespace

bool flattenOtlpRequest(const std::string& serialized, std::vector<FlatSpan>* out) {
  otlp_collector::ExportTraceServiceRequest req;
  if (!req.ParseFromString(serialized)) {
    return false;
  }
  appendFlat(req, *out);
  return true;
}

std::string FlatSpan::str(const std::string& key) const {
  auto it = attributes.find(key);
  if (it == attributes.end()) {
    return "<missing>";
  }
  if (it->second.type != AttrValue::Type::String) {
    return "<not a string: " + attrText(it->second) + ">";
  }
  return it->second.s;
}

std::optional<int64_t> FlatSpan::integer(const std::string& key) const {
  auto it = attributes.find(key);
  if (it == attributes.end() || it->second.type != AttrValue::Type::Int) {
    return std::nullopt;
  }
  return it->second.i;
}

std::optional<std::vector<std::string>> FlatSpan::strings(const std::string& key) const {
  auto it = attributes.find(key);
  if (it == attributes.end() || it->second.type != AttrValue::Type::StringArray) {
    return std::nullopt;
  }
  return it->second.strings;
}

std::string FlatSpan::resourceStr(const std::string& key) const {
  auto it = resource.find(key);
  if (it == resource.end()) {
    return "<missing>";
  }
  if (it->second.type != AttrValue::Type::String) {
    return "<not a string: " + attrText(it->second) + ">";
  }
  return it->second.s;
}

std::string FlatSpan::describe() const {
  std::ostringstream os;
  os << "{name=\"" << name << "\" kind=" << kind << " trace=" << trace_id << " span=" << span_id
     << " parent=" << parent_span_id << " status=" << status_code << " attrs={";
  for (const auto& [k, v] : attributes) {
    os << k << "=" << attrText(v) << " ";
  }
  os << "} resource={";
  for (const auto& [k, v] : resource) {
    os << k << "=" << attrText(v) << " ";
  }
  os << "}}";
  return os.str();
}

struct OtlpReceiver::Impl final : otlp_collector::TraceService::Service {
  mutable std::mutex mu;
  std::condition_variable cv;
  int fail_next = 0;
  int answer_all = 0;  // grpc::StatusCode; 0 = OK
  int64_t reject = 0;
  std::chrono::milliseconds delay{0};
  size_t calls = 0;
  size_t requests = 0;
  std::vector<FlatSpan> spans;
  std::vector<size_t> request_bytes;
  std::multimap<std::string, std::string> metadata;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string unix_path;               // when listening on a Unix socket instead
  std::optional<RefusedPort> refused;  // after shutdown()

  grpc::Status Export(grpc::ServerContext* ctx,
                      const otlp_collector::ExportTraceServiceRequest* req,
                      otlp_collector::ExportTraceServiceResponse* resp) override {
    std::chrono::milliseconds wait;
    {
      std::lock_guard lock(mu);
      wait = delay;
    }
    std::this_thread::sleep_for(wait);
    std::lock_guard lock(mu);
    ++calls;
    if (fail_next > 0) {
      --fail_next;
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake collector: try again");
    }
    if (answer_all != 0) {
      return grpc::Status(static_cast<grpc::StatusCode>(answer_all), "fake collector: refused");
    }
    ++requests;
    if (reject > 0) {
      resp->mutable_partial_success()->set_rejected_spans(reject);
      resp->mutable_partial_success()->set_error_message("fake collector: over quota");
    }
    metadata.clear();
    for (const auto& [k, v] : ctx->client_metadata()) {
      metadata.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
    }
    appendFlat(*req, spans);
    request_bytes.push_back(req->ByteSizeLong());
    cv.notify_all();
    return grpc::Status::OK;
  }
};

OtlpReceiver::OtlpReceiver(uint16_t port) : OtlpReceiver("127.0.0.1:" + std::to_string(port), "") {}

OtlpReceiver::OtlpReceiver(const std::string& unix_socket_path)
    : OtlpReceiver("unix:" + unix_socket_path, unix_socket_path) {}

OtlpReceiver::OtlpReceiver(const std::string& address, const std::string& unix_socket_path)
    : impl_(std::make_unique<Impl>()) {
  impl_->unix_path = unix_socket_path;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl_->port);
  builder.RegisterService(impl_.get());
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || impl_->port == 0) {
    throw std::runtime_error("OtlpReceiver: cannot start gRPC server");
  }
}

OtlpReceiver::~OtlpReceiver() {
  shutdown();
}

void OtlpReceiver::shutdown() {
  if (impl_->server) {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    impl_->server->Wait();
    impl_->server.reset();
    if (!impl_->unix_path.empty()) {
      return;
    }
    try {
      impl_->refused.emplace(static_cast<uint16_t>(impl_->port));
    } catch (const std::runtime_error&) {
      // Bound by someone in between (a test bringing the collector back): nothing left to hold.
    }
  }
}

uint16_t OtlpReceiver::port() const {
  return static_cast<uint16_t>(impl_->port);
}

std::string OtlpReceiver::endpoint() const {
  if (!impl_->unix_path.empty()) {
    return "unix:" + impl_->unix_path;
  }
  return "http://127.0.0.1:" + std::to_string(impl_->port);
}

void OtlpReceiver::answerAll(grpc_status_code_t code) {
  std::lock_guard lock(impl_->mu);
  impl_->answer_all = code;
}

void OtlpReceiver::rejectInEachResponse(int64_t spans) {
  std::lock_guard lock(impl_->mu);
  impl_->reject = spans;
}

void OtlpReceiver::delayAnswers(std::chrono::milliseconds delay) {
  std::lock_guard lock(impl_->mu);
  impl_->delay = delay;
}

void OtlpReceiver::failNext(int n) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_next = n;
}

size_t OtlpReceiver::exportCalls() const {
  std::lock_guard lock(impl_->mu);
  return impl_->calls;
}

size_t OtlpReceiver::requestCount() const {
  std::lock_guard lock(impl_->mu);
  return impl_->requests;
}

std::vector<size_t> OtlpReceiver::requestBytes() const {
  std::lock_guard lock(impl_->mu);
  return impl_->request_bytes;
}

std::vector<FlatSpan> OtlpReceiver::spans() const {
  std::lock_guard lock(impl_->mu);
  return impl_->spans;
}

std::vector<FlatSpan> OtlpReceiver::waitForSpans(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [&] { return impl_->spans.size() >= n; });
  return impl_->spans;
}

std::multimap<std::string, std::string> OtlpReceiver::lastMetadata() const {
  std::lock_guard lock(impl_->mu);
  return impl_->metadata;
}

}  // namespace sidetrace::it
