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

void finishRequest(Worker& worker, WorkerGeneration& wg, filters::Stream& s, uint64_t start_ns) {
  wg.chain.onComplete(s);
  const Generation& gen = *wg.gen;
  const size_t listener = s.listener_index;
  size_t slot =
      s.route != nullptr ? gen.routeSlot(listener, s.route_index) : gen.noRouteSlot(listener);
  uint64_t now = worker.tracer().now();
  const uint64_t duration = now > start_ns ? now - start_ns : 0;
  worker.mutableStats().countRequest(slot, s.response_status, duration);
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

namespace {

// What the proxy answers itself. A gRPC client gets a trailers-only response: HTTP 200 with
// grpc-status in the one HEADERS frame, which every gRPC library reports as that status.
awaitable<void> sendLocalReply(WorkerGeneration& wg, filters::Stream& s, DownstreamSide& down,
                               int status, std::string_view body, int grpc_code = -1) {
  filters::ResponseHead head;
  if (s.grpc) {
    head.status = 200;
    head.headers.add("content-type", "application/grpc");
    const int code = grpc_code >= 0 ? grpc_code : filters::grpcStatusForHttp(status);
    head.headers.add("grpc-status", std::to_string(code));
    std::string msg(body);
    while (!msg.empty() && msg.back() == '\n') {
      msg.pop_back();
    }
    head.headers.add("grpc-message", msg);
    s.grpc_status = code;
    wg.chain.onResponse(s, head);
    s.response_status = 200;
    co_await down.sendHead(head, true);
    co_return;
  }
  head.status = status;
  head.headers.add("content-type", "text/plain");
  wg.chain.onResponse(s, head);
  const bool no_body = s.request.method == "HEAD" || body.empty();
  head.headers.set("content-length", std::to_string(body.size()));
  s.response_status = status;
  if (co_await down.sendHead(head, no_body) && !no_body) {
    co_await down.sendBody(body, true);
  }
}

int failureStatus(UpstreamResult::Error e) {
  return e == UpstreamResult::Error::Timeout    ? 504
         : e == UpstreamResult::Error::Overflow ? 503
                                                : 502;
}

// What a gRPC client library reports for a failed attempt, and what the proxy answers with.
int grpcFailureCode(UpstreamResult::Error e) {
  return e == UpstreamResult::Error::Timeout ? filters::kGrpcDeadlineExceeded
                                             : filters::kGrpcUnavailable;
}

}  // namespace

awaitable<void> runExchange(Worker& worker, WorkerGeneration& wg, filters::Stream& s,
                            DownstreamSide& down, bool request_ended, uint64_t start_ns) {
  if (wg.chain.onRequest(s) == filters::FilterStatus::StopIteration) {
    auto reply = std::move(*s.local_reply);
    co_await sendLocalReply(wg, s, down, reply.status, reply.body);
    finishRequest(worker, wg, s, start_ns);
    co_return;
  }
  co_await forwardUpstream(worker, wg, s, down, request_ended, start_ns);
}

awaitable<void> forwardUpstream(Worker& worker, WorkerGeneration& wg, filters::Stream& s,
                                DownstreamSide& down, bool request_ended, uint64_t start_ns) {
  auto& chain = wg.chain;
  auto& req = s.request;
  auto ex = co_await asio::this_coro::executor;
  const size_t cluster_index = wg.gen->route_cluster[s.listener_index][s.route_index];
  if (cluster_index == kNoCluster) {  // validated at load; defensive
    co_await sendLocalReply(wg, s, down, 500, "route has no cluster\n");
    finishRequest(worker, wg, s, start_ns);
    co_return;
  }
  auto& pool = *wg.pools[cluster_index];
  const size_t cluster_slot = wg.gen->cluster_slots[cluster_index];
  const auto& route = *s.route;
  upstream::BreakerSlot request_slot =
      upstream::CircuitBreakers::take(pool.cluster().breakers->requests);
  if (!request_slot) {
    worker.mutableStats().countTrip(cluster_slot, WorkerStats::kBreakerRequests);
    s.error_type = "overflow";
    co_await sendLocalReply(wg, s, down, 503, "upstream overflow\n");
    finishRequest(worker, wg, s, start_ns);
    co_return;
  }
  if (pool.noneHealthy()) {  // health checks say every endpoint is down: fail fast
    s.error_type = "no_healthy_upstream";
    co_await sendLocalReply(wg, s, down, 503, "no healthy upstream\n");
    finishRequest(worker, wg, s, start_ns);
    co_return;
  }
  RetryAttempts attempts(wg.load[cluster_index], pool.cluster(), worker.mutableStats(),
                         cluster_slot);

  // The deadline: the route's timeout, or the caller's grpc-timeout when that is sooner.
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(route.timeout);
  if (s.grpc) {
    if (auto v = req.headers.get("grpc-timeout")) {
      if (auto t = filters::parseGrpcTimeout(*v); t && *t < timeout) {
        timeout = *t;
      }
    }
  }
  const auto deadline_at = std::chrono::steady_clock::now() + timeout;
  s.upstream_attempted = true;

  // Timer handlers may already be queued when an attempt or the exchange ends, so what they touch
  // is reached through shared state the exchange switches off.
  struct DeadlineState {
    bool active = true;
    bool fired = false;
    UpstreamCall* up = nullptr;
    DownstreamSide* down = nullptr;
  };
  auto dl = std::make_shared<DeadlineState>();
  dl->down = &down;
  const bool& timed_out = dl->fired;
  asio::steady_timer deadline(ex);
  deadline.expires_after(timeout);
  deadline.async_wait([dl](boost::system::error_code ec) {
    if (ec || !dl->active) {
      return;
    }
    dl->fired = true;
    if (dl->up != nullptr) {
      dl->up->cancel();
    }
    dl->down->interrupt();
  });

  // Retries replay the request, so its whole body must be here already (it is read into `body`
  // once); a streamed body goes out once, beside the response, through the pump below.
  const config::RetryPolicy* retry = route.retry_policy ? &*route.retry_policy : nullptr;
  std::string body;
  filters::HeaderMap body_trailers;
  if (retry != nullptr && !request_ended && down.bodyComplete()) {
    for (bool end = false; !end;) {
      std::string_view data;
      if (!co_await down.readBody(data, end)) {
        retry = nullptr;  // the client went away; the attempt below finds out
        break;
      }
      body.append(data);
      down.consumeBody(data.size());
    }
    if (const auto* t = down.requestTrailers()) {
      body_trailers = *t;
    }
  } else if (!request_ended) {
    retry = nullptr;
  }
  const bool replay = retry != nullptr && !request_ended;
  const bool idempotent = idempotentMethod(req.method);

  std::unique_ptr<UpstreamCall> up;
  UpstreamResult::Error err = UpstreamResult::Error::None;
  filters::ResponseHead resp;
  bool resp_end = false;
  uint64_t attempt_start_ns = 0;
  TriedEndpoints tried;
  for (;;) {
    const auto& endpoint = pickForAttempt(pool, tried);
    s.upstream = UpstreamResult();
    s.upstream.endpoint_host = endpoint.host;
    s.upstream.endpoint_port = endpoint.port;
    s.upstream.tls = pool.cluster().tls != nullptr;
    s.upstream.resend_count = attempts.count();
    if (!req.headers.get("host")) {
      req.headers.add("Host", endpoint.authority);
    }
    chain.onUpstreamRequest(s, req);  // a CLIENT span per attempt
    attempt_start_ns = worker.tracer().now();
    up = wg.h2pools[cluster_index]
             ? makeHttp2Call(*wg.h2pools[cluster_index], endpoint)
             : makeHttp1Call(pool, endpoint, req.method == "HEAD", wg.config().limits.buffer_bytes,
                             worker.buffers());
    s.upstream.http2 = up->http2();
    down.active_upstream = up.get();
    dl->up = up.get();

    auto per_try = std::make_shared<DeadlineState>();
    per_try->up = up.get();
    asio::steady_timer per_try_timer(ex);
    if (retry != nullptr && retry->per_try_timeout.count() > 0) {
      per_try_timer.expires_after(retry->per_try_timeout);
      per_try_timer.async_wait([per_try](boost::system::error_code ec) {
        if (ec || !per_try->active) {
          return;
        }
        per_try->fired = true;
        per_try->up->cancel();
      });
    }

    err = co_await up->start(
        req, request_ended || (replay && body.empty() && body_trailers.size() == 0));
    if (err == UpstreamResult::Error::None) {
      s.upstream.endpoint_address = up->peer_address;
      if (replay && (!body.empty() || body_trailers.size() > 0)) {
        const bool ok = body_trailers.size() > 0
                            ? (body.empty() || co_await up->sendBody(body, false)) &&
                                  co_await up->sendTrailers(body_trailers)
                            : co_await up->sendBody(body, true);
        s.request_body_bytes = body.size();
        if (!ok) {
          err = UpstreamResult::Error::Reset;
        }
      }
    }
    resp = filters::ResponseHead();
    resp_end = false;
    if (err == UpstreamResult::Error::None && (request_ended || replay)) {
      err = co_await up->readHead(resp, resp_end);
    }
    per_try->active = false;
    per_try_timer.cancel();
    if (err != UpstreamResult::Error::None && per_try->fired) {
      err = UpstreamResult::Error::Timeout;
    }
    const bool refused = up->connect_error == upstream::ConnectError::Refused;
    const AttemptEnd end{err, resp.status, per_try->fired, timed_out, down.gone(), refused};
    const AttemptVerdict verdict = judgeAttempt(end);
    if ((request_ended || replay) && verdict.report &&
        pool.reportOutcome(endpoint, verdict.failed, end.connect_refused)) {
      worker.mutableStats().countEjection(cluster_slot, endpoint.label);
    }
    if (retry == nullptr || !verdict.may_retry) {
      break;
    }
    int grpc_head = s.grpc && resp_end && err == UpstreamResult::Error::None
                        ? filters::parseGrpcStatus(resp.headers)
                        : -1;
    bool retriable;
    if (err != UpstreamResult::Error::None) {
      retriable = retriableFailure(*retry, err, per_try->fired) &&
                  (idempotent || s.grpc || err == UpstreamResult::Error::ConnectFailure);
    } else if (grpc_head > 0) {
      // A trailers-only gRPC failure: the call did not run (or failed as a whole), whatever
      // the HTTP method, which is always POST for gRPC.
      retriable = retriableResponse(*retry, resp.status, grpc_head);
    } else {
      retriable = idempotent && retriableResponse(*retry, resp.status, -1);
    }
    const bool free = retryIsFree(end, pool, tried);
    const auto wait =
        retriable ? attempts.admit(*retry, worker.random(), deadline_at, free) : std::nullopt;
    if (!wait) {
      break;
    }
    // This attempt ends here: its CLIENT span records why.
    if (err != UpstreamResult::Error::None) {
      s.upstream.error = err;
      s.error_type = filters::errorTypeName(err);
      if (s.grpc) {
        s.upstream.grpc_status = grpcFailureCode(err);
      }
    } else {
      s.upstream.status = resp.status;
      s.upstream.grpc_status = grpc_head;
    }
    chain.onUpstreamResult(s);
    s.error_type.clear();
    dl->up = nullptr;
    down.active_upstream = nullptr;
    up->cancel();
    up.reset();
    attempts.begin(free);
    if (wait->count() > 0) {
      asio::steady_timer t(ex);
      t.expires_after(*wait);
      boost::system::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // Request body, downstream → upstream, running beside the response loop below (a request
  // that is not replayed).
  bool pump_running = false;
  Wakeup pump_done(ex);
  auto pumpRequest = [&]() -> awaitable<void> {
    for (;;) {
      std::string_view data;
      bool end = false;
      if (!co_await down.readBody(data, end)) {
        break;
      }
      const size_t n = data.size();
      bool ok = true;
      const filters::HeaderMap* trailers = end ? down.requestTrailers() : nullptr;
      if (trailers != nullptr) {
        ok = (n == 0 || co_await up->sendBody(data, false)) && co_await up->sendTrailers(*trailers);
      } else if (n > 0 || end) {
        ok = co_await up->sendBody(data, end);
      }
      s.request_body_bytes += n;
      down.consumeBody(n);
      if (!ok || end) {
        break;
      }
    }
    pump_running = false;
    pump_done.notify();
  };
  if (err == UpstreamResult::Error::None && !request_ended && !replay) {
    pump_running = true;
    asio::co_spawn(ex, pumpRequest, asio::detached);
    err = co_await up->readHead(resp, resp_end);
    const AttemptVerdict verdict = judgeAttempt({err, resp.status, false, timed_out, down.gone()});
    if (verdict.report && pool.reportOutcome(*tried.list[tried.size - 1], verdict.failed)) {
      worker.mutableStats().countEjection(cluster_slot, tried.list[tried.size - 1]->label);
    }
  }
  attempts.finish(err != UpstreamResult::Error::None || resp.status >= 500 ||
                  (s.grpc && filters::grpcServerError(filters::parseGrpcStatus(resp.headers))));

  bool broken = false;
  if (err == UpstreamResult::Error::None) {
    s.upstream.status = resp.status;
    s.upstream_latency_nanos = worker.tracer().now() - attempt_start_ns;
    if (s.grpc) {
      s.upstream.grpc_status = filters::parseGrpcStatus(resp.headers);  // trailers-only
    }
    chain.onResponse(s, resp);
    s.response_status = resp.status;
    if (!co_await down.sendHead(resp, resp_end)) {
      broken = true;
      s.error_type = "downstream_reset";
    }
    while (!resp_end && !broken) {
      std::string_view data;
      UpstreamResult::Error e = co_await up->readBody(data, resp_end);
      if (e != UpstreamResult::Error::None) {
        s.upstream.error = timed_out ? UpstreamResult::Error::Timeout : e;
        s.error_type = filters::errorTypeName(s.upstream.error);
        broken = true;
        if (s.grpc) {
          // The call's end in gRPC's own terms, rather than a reset clients report as INTERNAL.
          const int code = grpcFailureCode(s.upstream.error);
          s.upstream.grpc_status = code;
          filters::HeaderMap end;
          end.add("grpc-status", std::to_string(code));
          end.add("grpc-message", std::string("upstream ") + s.error_type);
          if (co_await down.sendTrailers(end)) {
            s.grpc_status = code;
            break;
          }
        }
        down.reset();
        break;
      }
      const filters::HeaderMap* trailers = resp_end ? up->trailers() : nullptr;
      bool ok;
      if (trailers != nullptr) {
        if (s.grpc) {
          s.upstream.grpc_status = filters::parseGrpcStatus(*trailers);
        }
        filters::HeaderMap copy = *trailers;
        ok = (data.empty() || co_await down.sendBody(data, false)) &&
             co_await down.sendTrailers(copy);
      } else {
        ok = co_await down.sendBody(data, resp_end);
      }
      s.response_body_bytes += data.size();
      if (!ok) {
        broken = true;
        s.error_type = "downstream_reset";
      }
    }
  }

  // Wind the request side down before the locals it uses go away.
  if (pump_running) {
    if (broken || err != UpstreamResult::Error::None) {
      up->cancel();
    }
    down.interrupt();
    while (pump_running) {
      co_await pump_done.wait();
    }
  }
  dl->active = false;
  deadline.cancel();
  down.active_upstream = nullptr;

  if (err != UpstreamResult::Error::None) {
    if (timed_out) {
      err = UpstreamResult::Error::Timeout;
    }
    auto& st = worker.mutableStats();
    if (err == UpstreamResult::Error::Timeout) {
      st.upstream_timeouts[cluster_slot].fetch_add(1, std::memory_order_relaxed);
    } else if (err == UpstreamResult::Error::ConnectFailure) {
      st.connect_failures[cluster_slot].fetch_add(1, std::memory_order_relaxed);
      if (up->connect_error == upstream::ConnectError::TlsHandshake) {
        st.upstream_tls_handshake_failures[cluster_slot].fetch_add(1, std::memory_order_relaxed);
      }
    } else if (err == UpstreamResult::Error::Overflow) {
      st.countTrip(cluster_slot, up->connect_error == upstream::ConnectError::OverflowPending
                                     ? WorkerStats::kBreakerPending
                                     : WorkerStats::kBreakerConnections);
    }
    s.upstream.error = err;
    s.error_type = filters::errorTypeName(err);
    if (s.grpc) {
      s.upstream.grpc_status = grpcFailureCode(err);
    }
    chain.onUpstreamResult(s);
    const int status = failureStatus(err);
    co_await sendLocalReply(wg, s, down, status, std::string(reasonPhrase(status)) + "\n",
                            grpcFailureCode(err));
    finishRequest(worker, wg, s, start_ns);
    co_return;
  }
  if (timed_out && broken) {
    worker.mutableStats().upstream_timeouts[cluster_slot].fetch_add(1, std::memory_order_relaxed);
  }
  if (s.grpc) {
    // What the client saw: the upstream's grpc-status, else what its HTTP status means to gRPC.
    if (s.grpc_status < 0) {
      s.grpc_status = s.upstream.grpc_status >= 0 ? s.upstream.grpc_status
                      : broken                    ? -1
                                                  : filters::grpcStatusForHttp(resp.status);
    }
  }
  up.reset();  // an HTTP/1 connection goes back to its pool here if both messages ended cleanly
  chain.onUpstreamResult(s);
  finishRequest(worker, wg, s, start_ns);
}

}  // namespace sidetrace::proxy
