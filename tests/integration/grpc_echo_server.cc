#include "tests/integration/grpc_echo_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/server_interceptor.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "echo.grpc.pb.h"

namespace sidetrace::it {

namespace {

using sidetrace::test::EchoReply;
using sidetrace::test::EchoRequest;

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("EchoServer: cannot read " + path);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string toString(grpc::string_ref r) {
  return std::string(r.data(), r.size());
}

// Sleeps `ms`, returning early (false) once the call is cancelled, so a deadline or a reset from
// the proxy ends the handler promptly.
bool waitUnlessCancelled(grpc::ServerContext* ctx, int ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until) {
    if (ctx->IsCancelled()) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return !ctx->IsCancelled();
}

void addTrailers(grpc::ServerContext* ctx, const EchoRequest& req) {
  for (const auto& [k, v] : req.trailing_metadata()) {
    ctx->AddTrailingMetadata(k, v);
  }
}

grpc::Status statusOf(const EchoRequest& req) {
  if (req.status_code() == 0) {
    return grpc::Status::OK;
  }
  return grpc::Status(static_cast<grpc::StatusCode>(req.status_code()), req.status_message());
}

const grpc::Status kCancelled(grpc::StatusCode::CANCELLED, "echo server: call cancelled");

}  // namespace

std::string EchoCallRecord::header(const std::string& key) const {
  auto it = metadata.find(key);
  return it == metadata.end() ? "" : it->second;
}

struct EchoServer::Impl final : sidetrace::test::Echo::Service {
  mutable std::mutex mu;
  std::condition_variable cv;
  std::vector<EchoCallRecord> calls;
  std::vector<EchoCallRecord> health_calls;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string address;

  // Records the call's arrival; returns its index for finish().
  size_t record(grpc::ServerContext* ctx, const char* method) {
    EchoCallRecord r;
    r.method = method;
    for (const auto& [k, v] : ctx->client_metadata()) {
      r.metadata.emplace(toString(k), toString(v));
    }
    r.authority = toString(ctx->ExperimentalGetAuthority());
    r.peer = ctx->peer();
    std::lock_guard lock(mu);
    calls.push_back(std::move(r));
    cv.notify_all();
    return calls.size() - 1;
  }

  grpc::Status finish(grpc::ServerContext* ctx, size_t index, grpc::Status status) {
    std::lock_guard lock(mu);
    calls[index].finished = true;
    calls[index].cancelled = ctx->IsCancelled();
    cv.notify_all();
    return status;
  }

  // The reply's report of what the server saw.
  static void describeCall(grpc::ServerContext* ctx, EchoReply* reply) {
    auto& md = *reply->mutable_metadata();
    for (const auto& [k, v] : ctx->client_metadata()) {
      std::string key = toString(k);
      if (key.size() >= 4 && key.compare(key.size() - 4, 4, "-bin") == 0) {
        continue;
      }
      std::string& slot = md[key];
      slot += (slot.empty() ? "" : ",") + toString(v);
    }
    auto tp = ctx->client_metadata().find("traceparent");
    if (tp != ctx->client_metadata().end()) {
      reply->set_traceparent(toString(tp->second));
    }
    reply->set_authority(toString(ctx->ExperimentalGetAuthority()));
  }

  grpc::Status Unary(grpc::ServerContext* ctx, const EchoRequest* req, EchoReply* reply) override {
    size_t i = record(ctx, "Unary");
    addTrailers(ctx, *req);
    if (!waitUnlessCancelled(ctx, req->delay_ms())) {
      return finish(ctx, i, kCancelled);
    }
    if (req->status_code() != 0) {
      return finish(ctx, i, statusOf(*req));
    }
    reply->set_message(req->message());
    describeCall(ctx, reply);
    return finish(ctx, i, grpc::Status::OK);
  }

  grpc::Status ServerStream(grpc::ServerContext* ctx, const EchoRequest* req,
                            grpc::ServerWriter<EchoReply>* writer) override {
    size_t i = record(ctx, "ServerStream");
    addTrailers(ctx, *req);
    if (!waitUnlessCancelled(ctx, req->delay_ms())) {
      return finish(ctx, i, kCancelled);
    }
    int n = std::max(1, req->reply_count());
    for (int k = 0; k < n; ++k) {
      EchoReply reply;
      reply.set_message(req->message() + "#" + std::to_string(k));
      reply.set_index(k);
      describeCall(ctx, &reply);
      if (!writer->Write(reply)) {
        return finish(ctx, i, kCancelled);
      }
    }
    return finish(ctx, i, statusOf(*req));
  }

  grpc::Status ClientStream(grpc::ServerContext* ctx, grpc::ServerReader<EchoRequest>* reader,
                            EchoReply* reply) override {
    size_t i = record(ctx, "ClientStream");
    EchoRequest req;
    grpc::Status status = grpc::Status::OK;
    std::string joined;
    int count = 0;
    while (reader->Read(&req)) {
      joined += (count++ == 0 ? "" : ",") + req.message();
      addTrailers(ctx, req);
      if (req.status_code() != 0) {
        status = statusOf(req);
      }
      if (!waitUnlessCancelled(ctx, req.delay_ms())) {
        return finish(ctx, i, kCancelled);
      }
    }
    if (status.ok()) {
      reply->set_message(joined);
      reply->set_index(count);
      describeCall(ctx, reply);
    }
    return finish(ctx, i, status);
  }

  grpc::Status Bidi(grpc::ServerContext* ctx,
                    grpc::ServerReaderWriter<EchoReply, EchoRequest>* stream) override {
    size_t i = record(ctx, "Bidi");
    EchoRequest req;
    grpc::Status status = grpc::Status::OK;
    int k = 0;
    while (stream->Read(&req)) {
      addTrailers(ctx, req);
      if (req.status_code() != 0) {
        status = statusOf(req);
      }
      if (!waitUnlessCancelled(ctx, req.delay_ms())) {
        return finish(ctx, i, kCancelled);
      }
      EchoReply reply;
      reply.set_message(req.message());
      reply.set_index(k++);
      describeCall(ctx, &reply);
      if (!stream->Write(reply)) {
        return finish(ctx, i, kCancelled);
      }
    }
    return finish(ctx, i, status);
  }
};

namespace {

// Records each grpc.health.v1.Health call's metadata as it arrives: the standard health service
// is grpc++'s own, so no Echo handler sees these calls.
class HealthCallRecorder final : public grpc::experimental::Interceptor {
 public:
  HealthCallRecorder(grpc::experimental::ServerRpcInfo* info, std::mutex& mu,
                     std::condition_variable& cv, std::vector<EchoCallRecord>& out)
      : info_(info), mu_(mu), cv_(cv), out_(out) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      EchoCallRecord r;
      r.method = info_->method();
      for (const auto& [k, v] : *methods->GetRecvInitialMetadata()) {
        r.metadata.emplace(toString(k), toString(v));
      }
      r.authority = toString(info_->server_context()->ExperimentalGetAuthority());
      r.peer = info_->server_context()->peer();
      std::lock_guard lock(mu_);
      out_.push_back(std::move(r));
      cv_.notify_all();
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  std::mutex& mu_;
  std::condition_variable& cv_;
  std::vector<EchoCallRecord>& out_;
};

class HealthCallRecorderFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  HealthCallRecorderFactory(std::mutex& mu, std::condition_variable& cv,
                            std::vector<EchoCallRecord>& out)
      : mu_(mu), cv_(cv), out_(out) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    if (std::string_view(info->method()).rfind("/grpc.health.v1.Health/", 0) != 0) {
      return nullptr;  // not intercepted
    }
    return new HealthCallRecorder(info, mu_, cv_, out_);
  }

 private:
  std::mutex& mu_;
  std::condition_variable& cv_;
  std::vector<EchoCallRecord>& out_;
};

}  // namespace

EchoServer::EchoServer(const EchoServerOptions& options) : impl_(std::make_unique<Impl>()) {
  grpc::EnableDefaultHealthCheckService(true);
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options.cert_file.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({readFile(options.key_file), readFile(options.cert_file)});
    creds = grpc::SslServerCredentials(ssl);
  }
  grpc::ServerBuilder builder;
  impl_->address = options.address;
  builder.AddListeningPort(options.address + ":0", creds, &impl_->port);
  builder.RegisterService(impl_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(
      std::make_unique<HealthCallRecorderFactory>(impl_->mu, impl_->cv, impl_->health_calls));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // Generous bounds for the flow-control test's large messages (default 4 MiB).
  builder.SetMaxReceiveMessageSize(16 << 20);
  builder.SetMaxSendMessageSize(16 << 20);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || impl_->port == 0) {
    throw std::runtime_error("EchoServer: cannot start gRPC server");
  }
}

EchoServer::~EchoServer() {
  shutdown();
}

void EchoServer::shutdown() {
  if (impl_->server) {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    impl_->server->Wait();
    impl_->server.reset();
  }
}

uint16_t EchoServer::port() const {
  return static_cast<uint16_t>(impl_->port);
}

std::string EchoServer::target() const {
  return impl_->address + ":" + std::to_string(impl_->port);
}

std::vector<EchoCallRecord> EchoServer::calls() const {
  std::lock_guard lock(impl_->mu);
  return impl_->calls;
}

std::vector<EchoCallRecord> EchoServer::waitForCalls(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [&] { return impl_->calls.size() >= n; });
  return impl_->calls;
}

std::vector<EchoCallRecord> EchoServer::waitForFinished(size_t n,
                                                        std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait_for(lock, timeout, [&] {
    size_t done = 0;
    for (const auto& c : impl_->calls) {
      done += c.finished ? 1 : 0;
    }
    return done >= n;
  });
  return impl_->calls;
}

std::vector<EchoCallRecord> EchoServer::healthCalls() const {
  std::lock_guard lock(impl_->mu);
  return impl_->health_calls;
}

void EchoServer::setServing(const std::string& service, bool serving) {
  if (impl_->server && impl_->server->GetHealthCheckService() != nullptr) {
    impl_->server->GetHealthCheckService()->SetServingStatus(service, serving);
  }
}

void EchoServer::setServing(bool serving) {
  if (impl_->server && impl_->server->GetHealthCheckService() != nullptr) {
    impl_->server->GetHealthCheckService()->SetServingStatus(serving);
  }
}

}  // namespace sidetrace::it
