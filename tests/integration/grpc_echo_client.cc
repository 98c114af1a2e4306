#include "tests/integration/grpc_echo_client.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>

#include "echo.grpc.pb.h"

namespace sidetrace::it {

namespace {

using sidetrace::test::EchoReply;
using sidetrace::test::EchoRequest;
using sidetrace::test::HealthCheckRequest;
using sidetrace::test::HealthCheckResponse;

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("EchoClient: cannot read " + path);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

EchoRequest toRequest(const EchoCall& c) {
  EchoRequest r;
  r.set_message(c.message);
  r.set_status_code(c.status_code);
  r.set_status_message(c.status_message);
  r.set_delay_ms(c.delay_ms);
  r.set_reply_count(c.reply_count);
  for (const auto& [k, v] : c.trailing_metadata) {
    (*r.mutable_trailing_metadata())[k] = v;
  }
  return r;
}

EchoReplyData fromReply(const EchoReply& r) {
  EchoReplyData d;
  d.message = r.message();
  d.index = r.index();
  d.traceparent = r.traceparent();
  d.metadata.insert(r.metadata().begin(), r.metadata().end());
  d.authority = r.authority();
  return d;
}

void prepare(grpc::ClientContext& ctx, const CallOptions& o) {
  ctx.set_deadline(std::chrono::system_clock::now() + o.deadline);
  for (const auto& [k, v] : o.metadata) {
    ctx.AddMetadata(k, v);
  }
}

std::multimap<std::string, std::string> copyMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& md) {
  std::multimap<std::string, std::string> out;
  for (const auto& [k, v] : md) {
    out.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
  }
  return out;
}

void complete(EchoResult& r, const grpc::ClientContext& ctx, const grpc::Status& s) {
  r.code = static_cast<int>(s.error_code());
  r.message = s.error_message();
  r.initial_metadata = copyMetadata(ctx.GetServerInitialMetadata());
  r.trailing_metadata = copyMetadata(ctx.GetServerTrailingMetadata());
}

}  // namespace

std::string EchoResult::trailer(const std::string& key) const {
  auto it = trailing_metadata.find(key);
  return it == trailing_metadata.end() ? "" : it->second;
}

std::string EchoResult::describe() const {
  std::ostringstream os;
  os << "{code=" << code << " (" << grpcCodeName(code) << ") message=\"" << message
     << "\" replies=" << replies.size() << " trailers={";
  for (const auto& [k, v] : trailing_metadata) {
    os << k << "=" << v << " ";
  }
  os << "}}";
  return os.str();
}

std::string grpcCodeName(int code) {
  static const char* names[] = {"OK",
                                "CANCELLED",
                                "UNKNOWN",
                                "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED",
                                "NOT_FOUND",
                                "ALREADY_EXISTS",
                                "PERMISSION_DENIED",
                                "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION",
                                "ABORTED",
                                "OUT_OF_RANGE",
                                "UNIMPLEMENTED",
                                "INTERNAL",
                                "UNAVAILABLE",
                                "DATA_LOSS",
                                "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(std::size(names))) {
    return names[code];
  }
  return "code " + std::to_string(code);
}

struct EchoClient::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<sidetrace::test::Echo::Stub> stub;
  std::unique_ptr<grpc::TemplatedGenericStub<HealthCheckRequest, HealthCheckResponse>> health;
};

EchoClient::EchoClient(const GrpcTarget& target) : impl_(std::make_unique<Impl>()) {
  grpc::ChannelArguments args;
  // Own connection per client: grpc++ otherwise shares subchannels between channels with equal
  // arguments, and tests count connections.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!target.ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = readFile(target.ca_file);
    creds = grpc::SslCredentials(ssl);
    if (!target.server_name.empty()) {
      args.SetSslTargetNameOverride(target.server_name);
    }
  }
  if (!target.authority.empty()) {
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, target.authority);
  }
  impl_->channel = grpc::CreateCustomChannel(target.address, creds, args);
  impl_->stub = sidetrace::test::Echo::NewStub(impl_->channel);
  impl_->health =
      std::make_unique<grpc::TemplatedGenericStub<HealthCheckRequest, HealthCheckResponse>>(
          impl_->channel);
}

EchoClient::~EchoClient() = default;

EchoResult EchoClient::unary(const EchoCall& call, const CallOptions& options) {
  grpc::ClientContext ctx;
  prepare(ctx, options);
  EchoReply reply;
  grpc::Status s = impl_->stub->Unary(&ctx, toRequest(call), &reply);
  EchoResult r;
  if (s.ok()) {
    r.replies.push_back(fromReply(reply));
  }
  complete(r, ctx, s);
  return r;
}

EchoResult EchoClient::serverStream(const EchoCall& call, const CallOptions& options) {
  grpc::ClientContext ctx;
  prepare(ctx, options);
  auto reader = impl_->stub->ServerStream(&ctx, toRequest(call));
  EchoResult r;
  EchoReply reply;
  while (reader->Read(&reply)) {
    r.replies.push_back(fromReply(reply));
  }
  complete(r, ctx, reader->Finish());
  return r;
}

EchoResult EchoClient::clientStream(const std::vector<EchoCall>& calls,
                                    const CallOptions& options) {
  grpc::ClientContext ctx;
  prepare(ctx, options);
  EchoReply reply;
  auto writer = impl_->stub->ClientStream(&ctx, &reply);
  for (const auto& c : calls) {
    if (!writer->Write(toRequest(c))) {
      break;  // the call is over; Finish says why
    }
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  EchoResult r;
  if (s.ok()) {
    r.replies.push_back(fromReply(reply));
  }
  complete(r, ctx, s);
  return r;
}

EchoResult EchoClient::bidi(const std::vector<EchoCall>& calls, const CallOptions& options) {
  grpc::ClientContext ctx;
  prepare(ctx, options);
  auto stream = impl_->stub->Bidi(&ctx);
  EchoResult r;
  EchoReply reply;
  bool open = true;
  for (const auto& c : calls) {
    if (!stream->Write(toRequest(c)) || !stream->Read(&reply)) {
      open = false;
      break;
    }
    r.replies.push_back(fromReply(reply));
  }
  stream->WritesDone();
  while (open && stream->Read(&reply)) {
    r.replies.push_back(fromReply(reply));
  }
  complete(r, ctx, stream->Finish());
  return r;
}

HealthResult EchoClient::healthCheck(const std::string& service, const CallOptions& options) {
  grpc::ClientContext ctx;
  prepare(ctx, options);
  HealthCheckRequest req;
  req.set_service(service);
  HealthCheckResponse resp;
  std::promise<grpc::Status> done;
  impl_->health->UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &req, &resp,
                           [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status s = done.get_future().get();
  HealthResult r;
  r.code = static_cast<int>(s.error_code());
  r.message = s.error_message();
  r.serving_status = s.ok() ? resp.status() : 0;
  return r;
}

}  // namespace sidetrace::it
