#include "proxy/exchange.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>

#include "filters/grpc.h"
#include "proxy/access_log.h"
#include "proxy/http1_codec.h"
#include "proxy/http2_client.h"
#include "proxy/retry.h"
#include "proxy/upstream_call.h"
#include "proxy/wakeup.h"
#include "proxy/worker.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using filters::UpstreamResult;

namespace {

// Counts, access-logs and debug-logs a finished request.
void finishRequest(Worker& worker, WorkerGeneration& wg, filters::Stream& s) {
  const uint64_t start_ns = s.start_ns;
  // One reading for the request's duration and the spans' end (the exchange may have taken it
  // already, before its last attempt's result).
  if (s.end_ns == 0) {
    s.end_ns = worker.tracer().now();
  }
  const uint64_t now = s.end_ns;
  wg.chain.onComplete(s);
  const Generation& gen = *wg.gen;
  const size_t listener = s.listener_index;
  size_t slot =
      s.route != nullptr ? gen.routeSlot(listener, s.route_index) : gen.noRouteSlot(listener);
  const uint64_t duration = now > start_ns ? now - start_ns : 0;
  worker.mutableStats().countRequest(slot, s.response_status, duration);
  const tracing::SpanContext& ctx = s.server_span.context();
  if (ExemplarSlots* ex = worker.mutableStats().request_exemplars.get();
      ex != nullptr && ctx.sampled() && ctx.valid()) {
    ex->record(slot, durationBucket(duration), {ctx.trace_id, ctx.span_id, duration, now});
  }
  if (s.upstream_latency_nanos != 0 && s.route != nullptr) {
    const size_t cluster = gen.route_cluster[listener][s.route_index];
    if (cluster != kNoCluster) {
      worker.mutableStats().countUpstreamResponse(gen.cluster_slots[cluster], s.upstream.status,
                                                  s.upstream_latency_nanos);
    }
  }
  if (auto* log = worker.accessLog()) {
    log->log(s, s.listener->name, {start_ns, duration});
  }
  // Per request, so debug only (STYLE.md 15); the query may hold secrets and is left out.
  const std::string_view target = s.request.target;
  spdlog::debug("{}: {} {} -> {}{}{} in {} us", s.listener->name, s.request.method,
                target.substr(0, target.find('?')), s.response_status,
                s.error_type.empty() ? "" : " ", s.error_type, duration / 1000);
}

int failureStatus(UpstreamResult::Error e) {
  return e == UpstreamResult::Error::Timeout || e == UpstreamResult::Error::ConnectTimeout ? 504
         : e == UpstreamResult::Error::Overflow                                            ? 503
                                                                                           : 502;
}

// What a gRPC client library reports for a failed attempt, and what the proxy answers with (a
// connection that never came up is UNAVAILABLE, as grpc-core reports it).
int grpcFailureCode(UpstreamResult::Error e) {
  return e == UpstreamResult::Error::Timeout ? filters::kGrpcDeadlineExceeded
                                             : filters::kGrpcUnavailable;
}

// One exchange's state across its steps. Lives in runExchange's coroutine frame.
class Exchange {
 public:
  Exchange(Worker& worker, WorkerGeneration& wg, filters::Stream& s, DownstreamSide& down,
           bool request_ended)
      : worker_(worker),
        wg_(wg),
        s_(s),
        down_(down),
        dl_(down.storage()),
        request_ended_(request_ended),
        resp_(dl_.response) {}
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;
  // Whatever path ended the exchange, no deadline may call back into this frame afterwards.
  ~Exchange() {
    for (upstream::Deadline* d : {&dl_.route, &dl_.per_try}) {
      d->disarm();
      d->onExpire(nullptr, nullptr);
    }
    down_.active_upstream = nullptr;
  }

  awaitable<void> run();

 private:
  struct Refusal {
    int status = 0;  // 0: the request may go upstream
    std::string_view body;
    std::string_view error_type;
  };
  Refusal refuse();
  awaitable<void> localReply(int status, std::string_view body, int grpc_code = -1);
  void finish() { finishRequest(worker_, wg_, s_); }
  awaitable<bool> collectReplayBody();
  awaitable<void> attempt(const upstream::Endpoint& endpoint);
  // After an attempt that may be retried: the back-off before the next one, or nullopt.
  std::optional<std::chrono::milliseconds> retryWait(const AttemptEnd& end, int grpc_head,
                                                     bool free);
  void endAttemptForRetry(int grpc_head);
  awaitable<void> pumpRequest();
  awaitable<bool> relayResponse();
  awaitable<void> answerFailure();
  void countFailure(UpstreamResult::Error err, upstream::ConnectError cerr);
  bool timedOut() const { return dl_.route.expired(); }
  bool perTryFired() const { return per_try_armed_ && dl_.per_try.expired(); }

  // Egress: the destination's endpoint, resolving its name unless a fresh answer is at hand (or
  // the app's own destination IP, in transparent mode); nullptr with err_ set when there is none.
  awaitable<const upstream::Endpoint*> egressEndpoint();
  // Egress: no endpoint for the destination. The CLIENT span records why; the app gets 502
  // (name not resolved), 503 (destination table full) or 504 (the timeout ran out first).
  awaitable<void> failEgress();
  // Egress CONNECT: a fresh connection to the destination (never a pooled one, and never given
  // back: it becomes the tunnel's), 200 Connection Established, then the side's tunnel until
  // either end closes. The CLIENT span, the access log line and the request's metrics cover the
  // tunnel's whole life, with the bytes each way; a connect that fails is answered as an
  // absolute-form request's would be (502, 503 or 504).
  awaitable<void> runTunnel(const upstream::Endpoint& endpoint);

  static void onRouteExpired(void* self) {
    auto& x = *static_cast<Exchange*>(self);
    if (x.resolver_ != nullptr) {
      x.resolver_->cancel();
    }
    if (x.up_) {
      x.up_->cancel();
    }
    x.down_.interrupt();
  }
  static void onTryExpired(void* self) {
    auto& x = *static_cast<Exchange*>(self);
    if (x.up_) {
      x.up_->cancel();
    }
  }

  Worker& worker_;
  WorkerGeneration& wg_;
  filters::Stream& s_;
  DownstreamSide& down_;
  ExchangeStorage& dl_;
  const bool request_ended_;
  upstream::ConnectionPool* pool_ = nullptr;
  upstream::BreakerSlot request_slot_;  // the cluster's max_requests, held to the end
  size_t cluster_index_ = 0;
  size_t cluster_slot_ = 0;
  const config::RetryPolicy* retry_ = nullptr;
  std::chrono::steady_clock::time_point route_deadline_at_;
  bool replay_ = false;  // the whole body is in body_, sent with each attempt
  bool per_try_armed_ = false;
  std::string body_;
  filters::HeaderMap body_trailers_;
  UpstreamCallPtr up_;
  UpstreamResult::Error err_ = UpstreamResult::Error::None;
  filters::ResponseHead& resp_;  // the side's (warm) storage
  bool resp_end_ = false;
  TriedEndpoints tried_;
  std::optional<RetryAttempts> attempts_;
  bool pump_running_ = false;
  std::optional<Wakeup> pump_done_;
  asio::ip::tcp::resolver* resolver_ = nullptr;  // egress, while a name is being resolved
};

// What the proxy answers itself. A gRPC client gets a trailers-only response: HTTP 200 with
// grpc-status in the one HEADERS frame, which every gRPC library reports as that status.
awaitable<void> Exchange::localReply(int status, std::string_view body, int grpc_code) {
  filters::ResponseHead head;
  if (s_.grpc) {
    head.status = 200;
    head.headers.add("content-type", "application/grpc");
    const int code = grpc_code >= 0 ? grpc_code : filters::grpcStatusForHttp(status);
    head.headers.add("grpc-status", std::to_string(code));
    std::string msg(body);
    while (!msg.empty() && msg.back() == '\n') {
      msg.pop_back();
    }
    head.headers.add("grpc-message", msg);
    s_.grpc_status = code;
    wg_.chain.onResponse(s_, head);
    s_.response_status = 200;
    co_await down_.sendHead(head, true);
    co_return;
  }
  head.status = status;
  head.headers.add("content-type", "text/plain");
  wg_.chain.onResponse(s_, head);
  const bool no_body = s_.request.method == "HEAD" || body.empty();
  head.headers.set("content-length", std::to_string(body.size()));
  s_.response_status = status;
  if (co_await down_.sendHead(head, no_body) && !no_body) {
    co_await down_.sendBody(body, true);
  }
}

// Picks the cluster and takes the request's circuit-breaker slot; what to answer instead when
// the request cannot go upstream at all.
Exchange::Refusal Exchange::refuse() {
  cluster_index_ = wg_.gen->route_cluster[s_.listener_index][s_.route_index];
  if (cluster_index_ == kNoCluster) {  // validated at load; defensive
    return {500, "route has no cluster\n", ""};
  }
  pool_ = wg_.pools[cluster_index_].get();
  cluster_slot_ = wg_.gen->cluster_slots[cluster_index_];
  request_slot_ = upstream::CircuitBreakers::take(pool_->cluster().breakers->requests);
  if (!request_slot_) {
    worker_.mutableStats().countTrip(cluster_slot_, WorkerStats::kBreakerRequests);
    return {503, "upstream overflow\n", "overflow"};
  }
  if (pool_->noneHealthy()) {  // health checks say every endpoint is down: fail fast
    return {503, "no healthy upstream\n", "no_healthy_upstream"};
  }
  return {};
}

awaitable<void> Exchange::run() {
  if (wg_.chain.onRequest(s_) == filters::FilterStatus::StopIteration) {
    auto reply = std::move(*s_.local_reply);
    co_await localReply(reply.status, reply.body);
    finish();
    co_return;
  }
  // The filters passed (s_.route is set): the attempts, the response, the end.
  if (const Refusal r = refuse(); r.status != 0) {
    s_.error_type = r.error_type;
    co_await localReply(r.status, r.body);
    finish();
    co_return;
  }
  const auto& route = *s_.route;
  attempts_.emplace(wg_.load[cluster_index_], pool_->cluster(), worker_.mutableStats(),
                    cluster_slot_);

  // The deadline: the route's timeout, or the caller's grpc-timeout when that is sooner.
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(route.timeout);
  if (s_.grpc) {
    if (auto v = s_.request.headers.get("grpc-timeout")) {
      if (auto t = filters::parseGrpcTimeout(*v); t && *t < timeout) {
        timeout = *t;
      }
    }
  }
  s_.upstream_attempted = true;
  dl_.route.onExpire(&Exchange::onRouteExpired, this);
  dl_.per_try.onExpire(&Exchange::onTryExpired, this);
  route_deadline_at_ = dl_.route.arm(timeout);

  retry_ = route.retry_policy && !down_.upgrade ? &*route.retry_policy : nullptr;
  if (!co_await collectReplayBody()) {
    retry_ = nullptr;  // the client went away; the attempt below finds out
  }
  replay_ = retry_ != nullptr && !request_ended_;

  const upstream::Endpoint* egress = nullptr;
  if (s_.listener->egress && wg_.gen->egress) {
    egress = co_await egressEndpoint();
    if (egress == nullptr) {
      co_await failEgress();
      co_return;
    }
    if (s_.tunnel) {
      co_await runTunnel(*egress);
      co_return;
    }
  }
  for (;;) {
    const upstream::Endpoint& endpoint =
        egress != nullptr ? *egress : pickForAttempt(*pool_, tried_);
    if (egress != nullptr) {
      tried_.add(egress);
      pool_->countPick(*egress);
    }
    co_await attempt(endpoint);
    const bool refused = up_->connect_error == upstream::ConnectError::Refused;
    const bool client_gone = down_.gone() || down_.requestError() != 0;
    const AttemptEnd end{err_, resp_.status, perTryFired(), timedOut(), client_gone, refused};
    const AttemptVerdict verdict = judgeAttempt(end);
    const bool head_read = request_ended_ || replay_;
    if (head_read && verdict.report &&
        pool_->reportOutcome(endpoint, verdict.failed, end.connect_refused)) {
      worker_.mutableStats().countEjection(cluster_slot_, endpoint.label);
    }
    if (retry_ == nullptr || !verdict.may_retry) {
      break;
    }
    const int grpc_head = s_.grpc && resp_end_ && err_ == UpstreamResult::Error::None
                              ? filters::parseGrpcStatus(resp_.headers)
                              : -1;
    const bool free = retryIsFree(end, *pool_, tried_);
    const auto wait = retryWait(end, grpc_head, free);
    if (!wait) {
      break;
    }
    endAttemptForRetry(grpc_head);
    attempts_->begin(free);
    if (wait->count() > 0) {
      asio::steady_timer t(co_await asio::this_coro::executor);
      t.expires_after(*wait);
      boost::system::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // A request that is not replayed streams its body beside the response.
  if (err_ == UpstreamResult::Error::None && !request_ended_ && !replay_) {
    auto ex = co_await asio::this_coro::executor;
    pump_done_.emplace(ex);
    pump_running_ = true;
    asio::co_spawn(ex, pumpRequest(), asio::detached);
    err_ = co_await up_->readHead(resp_, resp_end_);
    if (err_ != UpstreamResult::Error::None) {
      countFailure(timedOut() ? UpstreamResult::Error::Timeout : err_, up_->connect_error);
    }
    const bool client_gone = down_.gone() || down_.requestError() != 0;
    const AttemptVerdict verdict =
        judgeAttempt({err_, resp_.status, false, timedOut(), client_gone});
    const upstream::Endpoint& last = *tried_.list[tried_.size - 1];
    if (verdict.report && pool_->reportOutcome(last, verdict.failed)) {
      worker_.mutableStats().countEjection(cluster_slot_, last.label);
    }
  }
  attempts_->finish(err_ != UpstreamResult::Error::None || resp_.status >= 500 ||
                    (s_.grpc && filters::grpcServerError(filters::parseGrpcStatus(resp_.headers))));

  const bool broken = err_ == UpstreamResult::Error::None && co_await relayResponse();
  // Wind the request side down before the state it uses goes away.
  if (pump_running_) {
    if (broken || err_ != UpstreamResult::Error::None) {
      up_->cancel();
    }
    down_.interrupt();
    while (pump_running_) {
      co_await pump_done_->wait();
    }
  }
  dl_.route.disarm();
  down_.active_upstream = nullptr;

  if (err_ != UpstreamResult::Error::None) {
    co_await answerFailure();
    co_return;
  }
  if (timedOut() && broken) {
    worker_.mutableStats().upstream_timeouts[cluster_slot_].fetch_add(1, std::memory_order_relaxed);
  }
  if (s_.grpc && s_.grpc_status < 0) {
    // What the client saw: the upstream's grpc-status, else what its HTTP status means to gRPC.
    s_.grpc_status = s_.upstream.grpc_status >= 0 ? s_.upstream.grpc_status
                     : broken                     ? -1
                                                  : filters::grpcStatusForHttp(resp_.status);
  }
  FlatBuffer* pending = nullptr;
  upstream::UpstreamConnection* tunnel_up =
      down_.upgrade && !broken ? up_->upgraded(pending) : nullptr;
  if (tunnel_up == nullptr) {
    up_.reset();  // an HTTP/1 connection goes back to its pool if both messages ended cleanly
  }
  s_.end_ns = worker_.tracer().now();  // the attempt and the exchange end together
  wg_.chain.onUpstreamResult(s_);
  finish();
  if (tunnel_up != nullptr) {
    co_await down_.tunnel(*up_);  // the span and the access log end at the 101, as Envoy's do
  }
}

awaitable<const upstream::Endpoint*> Exchange::egressEndpoint() {
  upstream::EgressDestinations& dests = *wg_.gen->egress;
  if (!s_.egress_address.empty()) {  // transparent: the app's own destination, an IP
    boost::system::error_code ec;
    const auto ip = asio::ip::make_address(s_.egress_address, ec);
    const auto* ep = ec ? nullptr : dests.direct(s_.egress_host, {ip, s_.egress_port});
    err_ = ep != nullptr ? UpstreamResult::Error::None : UpstreamResult::Error::Overflow;
    co_return ep;
  }
  if (const auto* ep =
          dests.lookup(s_.egress_host, s_.egress_port, std::chrono::steady_clock::now())) {
    co_return ep;
  }
  asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
  resolver_ = &resolver;  // the route deadline cancels it
  boost::system::error_code ec;
  auto results = co_await resolver.async_resolve(s_.egress_host, std::to_string(s_.egress_port),
                                                 asio::redirect_error(asio::use_awaitable, ec));
  resolver_ = nullptr;
  err_ = UpstreamResult::Error::Unresolved;
  if (ec) {
    co_return nullptr;
  }
  const auto addresses = upstream::preferredAddresses(results);
  if (addresses.empty()) {
    co_return nullptr;
  }
  const auto* ep = dests.record(s_.egress_host, s_.egress_port, addresses.front(),
                                std::chrono::steady_clock::now());
  err_ = ep != nullptr ? UpstreamResult::Error::None : UpstreamResult::Error::Overflow;
  co_return ep;
}

awaitable<void> Exchange::failEgress() {
  s_.upstream = UpstreamResult();
  s_.upstream.endpoint_host = s_.egress_host;
  s_.upstream.endpoint_port = s_.egress_port;
  wg_.chain.onUpstreamRequest(s_, s_.request);  // the CLIENT span of the call that could not go
  dl_.route.disarm();
  co_await answerFailure();
}

awaitable<void> Exchange::runTunnel(const upstream::Endpoint& endpoint) {
  s_.upstream = UpstreamResult();
  s_.upstream.endpoint_host = s_.egress_host;
  s_.upstream.endpoint_port = s_.egress_port;
  pool_->countPick(endpoint);
  wg_.chain.onUpstreamRequest(s_, s_.request);  // the tunnel's CLIENT span starts
  upstream::ConnectError cerr = upstream::ConnectError::None;
  auto conn = co_await pool_->connect(endpoint, cerr);
  dl_.route.disarm();  // egress.timeout bounds the way to the tunnel, not the tunnel
  if (conn != nullptr && timedOut()) {  // egress.timeout shorter than egress.connect_timeout
    conn.reset();
    cerr = upstream::ConnectError::Timeout;
  }
  if (conn == nullptr) {
    err_ = timedOut() ? UpstreamResult::Error::Timeout : connectFailure(cerr);
    countFailure(err_, cerr);
    co_await answerFailure();
    co_return;
  }
  // No upstream_latency_nanos: the destination sends no HTTP response to count.
  s_.upstream.endpoint_address = conn->peer_address;
  resp_.clear();
  resp_.status = 200;
  resp_.reason = "Connection Established";
  wg_.chain.onResponse(s_, resp_);
  s_.response_status = 200;
  filters::InflightRegistry* counters = wg_.gen->inflight.get();
  if (counters != nullptr) {
    counters->tunnelOpened();
  }
  if (co_await down_.sendHead(resp_, true)) {
    const TunnelStats t = co_await down_.connectTunnel(*conn);
    s_.request_body_bytes = t.to_upstream;
    s_.response_body_bytes = t.to_downstream;
    // Many TLS peers end a connection with an RST (no close_notify, or unread data at close):
    // after the destination has answered, a reset is how the tunnel ended, not a failure.
    const bool answered = t.to_downstream > 0;
    s_.upstream.error =
        t.error == UpstreamResult::Error::Reset && answered ? UpstreamResult::Error::None : t.error;
  } else {
    s_.upstream.error = UpstreamResult::Error::Reset;
  }
  if (counters != nullptr) {
    counters->tunnelClosed();
  }
  conn.reset();
  if (s_.upstream.error != UpstreamResult::Error::None) {
    s_.error_type = filters::errorTypeName(s_.upstream.error);
  }
  wg_.chain.onUpstreamResult(s_);
  finish();
}

// Retries replay the request, so its whole body must be here already (it is read into body_
// once); a streamed body goes out once, beside the response, through pumpRequest. False when the
// client went away while it was read.
awaitable<bool> Exchange::collectReplayBody() {
  if (retry_ == nullptr || request_ended_) {
    co_return true;
  }
  if (!down_.bodyComplete()) {
    retry_ = nullptr;
    co_return true;
  }
  for (bool end = false; !end;) {
    std::string_view data;
    if (!co_await down_.readBody(data, end)) {
      co_return false;
    }
    body_.append(data);
    down_.consumeBody(data.size());
  }
  if (const auto* t = down_.requestTrailers()) {
    body_trailers_ = *t;
  }
  co_return true;
}

// One attempt at `endpoint`: start the call, send a replayed body, read the response head when
// the request has gone out whole. Leaves up_, err_, resp_ and resp_end_ set.
awaitable<void> Exchange::attempt(const upstream::Endpoint& endpoint) {
  auto& req = s_.request;
  s_.upstream = UpstreamResult();
  s_.upstream.endpoint_host = endpoint.host;
  s_.upstream.endpoint_port = endpoint.port;
  s_.upstream.tls = pool_->cluster().tls != nullptr;
  s_.upstream.resend_count = attempts_->count();
  if (!req.headers.get("host")) {
    req.headers.add("Host", endpoint.authority);
  }
  s_.attempt_start_ns = worker_.tracer().now();
  wg_.chain.onUpstreamRequest(s_, req);  // a CLIENT span per attempt
  // HTTP/2 to an http2 cluster, and on the egress side to a destination the app called over h2c.
  auto& h2pool = wg_.h2pools[cluster_index_];
  const bool h2 = h2pool && !down_.upgrade && (!pool_->cluster().cfg->egress || s_.http2);
  up_ = h2 ? makeHttp2Call(*h2pool, endpoint)
           : worker_.http1Calls().take(
                 *pool_, endpoint,
                 {req.method == "HEAD", down_.upgrade, wg_.config().limits.buffer_bytes});
  s_.upstream.http2 = up_->http2();
  // An inbound hop, with an egress listener whose process rule needs the hop's connection.
  if (s_.inflight_token != 0 && wg_.config().egress && wg_.config().egress->process) {
    if (up_->http2()) {
      s_.hop_socket.setOpaque();  // requests share the connection: the rule cannot tell them apart
    } else {
      up_->hop_socket = &s_.hop_socket;
    }
  }
  down_.active_upstream = up_.get();
  per_try_armed_ = retry_ != nullptr && retry_->per_try_timeout.count() > 0;
  if (per_try_armed_) {
    dl_.per_try.arm(retry_->per_try_timeout);
  }

  const bool body_follows = !body_.empty() || body_trailers_.size() > 0;
  const bool end_stream = request_ended_ || (replay_ && !body_follows);
  std::optional<UpstreamResult::Error> started = up_->startNow(req, end_stream);
  if (!started) {
    started = co_await up_->start(req, end_stream);
  }
  err_ = *started;
  if (err_ == UpstreamResult::Error::None) {
    s_.upstream.endpoint_address = up_->peer_address;
    if (replay_ && body_follows) {
      const bool ok = body_trailers_.size() > 0
                          ? (body_.empty() || co_await up_->sendBody(body_, false)) &&
                                co_await up_->sendTrailers(body_trailers_)
                          : co_await up_->sendBody(body_, true);
      s_.request_body_bytes = body_.size();
      if (!ok) {
        err_ = UpstreamResult::Error::Reset;
      }
    }
  }
  resp_.clear();
  resp_end_ = false;
  if (err_ == UpstreamResult::Error::None && (request_ended_ || replay_)) {
    err_ = co_await up_->readHead(resp_, resp_end_);
  }
  dl_.per_try.disarm();
  if (err_ != UpstreamResult::Error::None && perTryFired()) {
    err_ = UpstreamResult::Error::Timeout;
  }
  if (err_ != UpstreamResult::Error::None) {
    countFailure(timedOut() ? UpstreamResult::Error::Timeout : err_, up_->connect_error);
  }
}

std::optional<std::chrono::milliseconds> Exchange::retryWait(const AttemptEnd& end, int grpc_head,
                                                             bool free) {
  const bool idempotent = idempotentMethod(s_.request.method);
  bool retriable;
  if (err_ != UpstreamResult::Error::None) {
    retriable = retriableFailure(*retry_, err_, end.per_try_timeout) &&
                (idempotent || s_.grpc || err_ == UpstreamResult::Error::ConnectFailure ||
                 err_ == UpstreamResult::Error::ConnectTimeout);  // nothing was sent
  } else if (grpc_head > 0) {
    // A trailers-only gRPC failure: the call did not run (or failed as a whole), whatever the
    // HTTP method, which is always POST for gRPC.
    retriable = retriableResponse(*retry_, resp_.status, grpc_head);
  } else {
    retriable = idempotent && retriableResponse(*retry_, resp_.status, -1);
  }
  if (!retriable) {
    return std::nullopt;
  }
  return attempts_->admit(*retry_, worker_.random(), route_deadline_at_, free);
}

// The attempt ends here and another follows: its CLIENT span records why.
void Exchange::endAttemptForRetry(int grpc_head) {
  if (err_ != UpstreamResult::Error::None) {
    s_.upstream.error = err_;
    s_.error_type = filters::errorTypeName(err_);
    if (s_.grpc) {
      s_.upstream.grpc_status = grpcFailureCode(err_);
    }
  } else {
    s_.upstream.status = resp_.status;
    s_.upstream.grpc_status = grpc_head;
  }
  wg_.chain.onUpstreamResult(s_);
  s_.error_type.clear();
  down_.active_upstream = nullptr;
  up_->cancel();
  up_.reset();
}

// Request body, downstream → upstream, running beside the response (a request not replayed).
// A client that breaks its request or leaves ends the attempt: the upstream would wait for the
// rest forever.
awaitable<void> Exchange::pumpRequest() {
  for (;;) {
    std::string_view data;
    bool end = false;
    if (!co_await down_.readBody(data, end)) {
      if (down_.gone() || down_.requestError() != 0) {
        up_->cancel();
      }
      break;
    }
    const size_t n = data.size();
    bool ok = true;
    const filters::HeaderMap* trailers = end ? down_.requestTrailers() : nullptr;
    if (trailers != nullptr) {
      ok = (n == 0 || co_await up_->sendBody(data, false)) && co_await up_->sendTrailers(*trailers);
    } else if (n > 0 || end) {
      ok = co_await up_->sendBody(data, end);
    }
    s_.request_body_bytes += n;
    down_.consumeBody(n);
    if (!ok || end) {
      break;
    }
  }
  pump_running_ = false;
  pump_done_->notify();
}

// The response, upstream → downstream. True when it broke off (either side failed).
awaitable<bool> Exchange::relayResponse() {
  s_.upstream.status = resp_.status;
  s_.upstream_latency_nanos = worker_.tracer().now() - s_.attempt_start_ns;
  if (s_.grpc) {
    s_.upstream.grpc_status = filters::parseGrpcStatus(resp_.headers);  // trailers-only
  }
  wg_.chain.onResponse(s_, resp_);
  s_.response_status = resp_.status;
  // Each step without a coroutine when it need not wait (the *Now calls), else awaited.
  std::optional<bool> sent = down_.sendHeadNow(resp_, resp_end_);
  if (!sent) {
    sent = co_await down_.sendHead(resp_, resp_end_);
  }
  if (!*sent) {
    s_.error_type = "downstream_reset";
    co_return true;
  }
  while (!resp_end_) {
    std::string_view data;
    std::optional<UpstreamResult::Error> read = up_->readBodyNow(data, resp_end_);
    if (!read) {
      read = co_await up_->readBody(data, resp_end_);
    }
    const UpstreamResult::Error e = *read;
    if (e != UpstreamResult::Error::None) {
      s_.upstream.error = timedOut() ? UpstreamResult::Error::Timeout : e;
      s_.error_type = filters::errorTypeName(s_.upstream.error);
      if (s_.grpc) {
        // The call's end in gRPC's own terms, rather than a reset clients report as INTERNAL.
        const int code = grpcFailureCode(s_.upstream.error);
        s_.upstream.grpc_status = code;
        filters::HeaderMap end;
        end.add("grpc-status", std::to_string(code));
        end.add("grpc-message", std::string("upstream ") + s_.error_type);
        if (co_await down_.sendTrailers(end)) {
          s_.grpc_status = code;
          co_return true;
        }
      }
      down_.reset();
      co_return true;
    }
    const filters::HeaderMap* trailers = resp_end_ ? up_->trailers() : nullptr;
    bool ok;
    if (trailers != nullptr) {
      if (s_.grpc) {
        s_.upstream.grpc_status = filters::parseGrpcStatus(*trailers);
      }
      filters::HeaderMap copy = *trailers;
      ok = (data.empty() || co_await down_.sendBody(data, false)) &&
           co_await down_.sendTrailers(copy);
    } else {
      std::optional<bool> done = down_.sendBodyNow(data, resp_end_);
      if (!done) {
        done = co_await down_.sendBody(data, resp_end_);
      }
      ok = *done;
    }
    s_.response_body_bytes += data.size();
    if (!ok) {
      s_.error_type = "downstream_reset";
      co_return true;
    }
  }
  co_return false;
}

// No response head came: say why. A client that broke its request gets 400/431 (the upstream
// never saw a whole request); one that left gets nothing; otherwise 502/503/504 or the gRPC
// status for the failure.
awaitable<void> Exchange::answerFailure() {
  if (timedOut()) {
    err_ = UpstreamResult::Error::Timeout;
  }
  if (const int bad = down_.requestError(); bad != 0) {
    s_.upstream.error = UpstreamResult::Error::ProtocolError;
    s_.error_type = filters::errorTypeName(s_.upstream.error);
    wg_.chain.onUpstreamResult(s_);
    co_await localReply(bad, std::string(reasonPhrase(bad)) + "\n");
    finish();
    co_return;
  }
  if (down_.gone()) {
    s_.upstream.error = UpstreamResult::Error::Reset;
    s_.error_type = "downstream_reset";
    wg_.chain.onUpstreamResult(s_);
    finish();
    co_return;
  }
  s_.upstream.error = err_;
  s_.error_type = filters::errorTypeName(err_);
  if (s_.grpc) {
    s_.upstream.grpc_status = grpcFailureCode(err_);
  }
  wg_.chain.onUpstreamResult(s_);
  const int status = failureStatus(err_);
  co_await localReply(status, std::string(reasonPhrase(status)) + "\n", grpcFailureCode(err_));
  finish();
}

// Per attempt that ended without a response head.
void Exchange::countFailure(UpstreamResult::Error err, upstream::ConnectError cerr) {
  auto& st = worker_.mutableStats();
  const size_t slot = cluster_slot_;
  if (err == UpstreamResult::Error::Timeout || err == UpstreamResult::Error::ConnectTimeout) {
    st.upstream_timeouts[slot].fetch_add(1, std::memory_order_relaxed);
  } else if (err == UpstreamResult::Error::ConnectFailure) {
    st.connect_failures[slot].fetch_add(1, std::memory_order_relaxed);
    if (cerr == upstream::ConnectError::TlsHandshake) {
      st.upstream_tls_handshake_failures[slot].fetch_add(1, std::memory_order_relaxed);
    }
  } else if (err == UpstreamResult::Error::Overflow) {
    st.countTrip(slot, cerr == upstream::ConnectError::OverflowPending
                           ? WorkerStats::kBreakerPending
                           : WorkerStats::kBreakerConnections);
  }
}

}  // namespace

awaitable<void> DownstreamSide::tunnel(UpstreamCall& up) {
  (void)up;
  co_return;
}

awaitable<TunnelStats> DownstreamSide::connectTunnel(upstream::UpstreamConnection& conn) {
  (void)conn;
  co_return TunnelStats{.error = UpstreamResult::Error::ProtocolError};
}

awaitable<void> runExchange(Worker& worker, WorkerGeneration& wg, filters::Stream& s,
                            DownstreamSide& down, bool request_ended, uint64_t start_ns) {
  s.start_ns = start_ns;
  s.attempt_start_ns = 0;
  s.end_ns = 0;
  Exchange exchange(worker, wg, s, down, request_ended);
  co_await exchange.run();
}

}  // namespace sidetrace::proxy
