#include "proxy/server.h"

#include <signal.h>

#include <spdlog/spdlog.h>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <sstream>
#include <thread>

#include "proxy/access_log.h"
#include "proxy/admin.h"
#include "proxy/worker.h"
#include "tracing/exporter.h"
#include "tracing/sampler.h"

namespace sidetrace::proxy {

namespace asio = boost::asio;

namespace {

const char* kClassNames[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

std::string escapeLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

const auto kStartSteady = std::chrono::steady_clock::now();
const auto kStartSystem = std::chrono::system_clock::now();

double uptimeSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - kStartSteady).count();
}

double processStartSeconds() {
  return std::chrono::duration<double>(kStartSystem.time_since_epoch()).count();
}

uint64_t residentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) {
    return 0;
  }
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

}  // namespace

std::string renderMetrics(const SharedState& shared,
                          const std::vector<std::unique_ptr<Worker>>& workers, bool draining) {
  const auto& cfg = *shared.config;
  std::ostringstream o;
  auto sum = [&](auto fn) {
    uint64_t n = 0;
    for (const auto& w : workers) {
      n += fn(w->stats());
    }
    return n;
  };

  o << "# HELP sidetrace_downstream_requests_total Requests answered, by listener, route and "
       "status class.\n"
       "# TYPE sidetrace_downstream_requests_total counter\n";
  for (size_t li = 0; li < cfg.listeners.size(); ++li) {
    const auto& l = cfg.listeners[li];
    for (size_t ri = 0; ri <= l.routes.size(); ++ri) {
      size_t slot = shared.routes.slot(li, ri);
      std::string route = ri < l.routes.size() ? l.routes[ri].name : "";
      for (size_t c = 0; c < kStatusClasses; ++c) {
        uint64_t n = sum([&](const WorkerStats& s) { return s.requests(slot, c); });
        if (n == 0 && !(c == 1 && ri < l.routes.size())) {
          continue;  // keep the output small: zero series only for 2xx of real routes
        }
        o << "sidetrace_downstream_requests_total{listener=\"" << escapeLabel(l.name)
          << "\",route=\"" << escapeLabel(route) << "\",status_class=\"" << kClassNames[c] << "\"} "
          << n << "\n";
      }
    }
  }
  // One histogram series: buckets, +Inf, sum, count.
  auto histogram = [&](std::string_view name, const std::string& labels, auto member,
                       size_t series) {
    auto get = [&](auto fn) { return sum([&](const WorkerStats& s) { return fn(s.*member); }); };
    uint64_t count = get([&](const DurationHistograms& h) { return h.count(series); });
    for (size_t b = 0; b < kDurationBuckets.size(); ++b) {
      o << name << "_bucket{" << labels << ",le=\"" << kDurationBuckets[b] << "\"} "
        << get([&](const DurationHistograms& h) { return h.bucket(series, b); }) << "\n";
    }
    o << name << "_bucket{" << labels << ",le=\"+Inf\"} " << count << "\n";
    o << name << "_sum{" << labels << "} "
      << static_cast<double>(get([&](const DurationHistograms& h) { return h.sumNanos(series); })) /
             1e9
      << "\n";
    o << name << "_count{" << labels << "} " << count << "\n";
  };
  o << "# HELP sidetrace_request_duration_seconds Time from request head to response end.\n"
       "# TYPE sidetrace_request_duration_seconds histogram\n";
  for (size_t li = 0; li < cfg.listeners.size(); ++li) {
    const auto& l = cfg.listeners[li];
    for (size_t ri = 0; ri <= l.routes.size(); ++ri) {
      size_t slot = shared.routes.slot(li, ri);
      if (ri == l.routes.size() &&
          sum([&](const WorkerStats& s) { return s.request_durations.count(slot); }) == 0) {
        continue;
      }
      histogram("sidetrace_request_duration_seconds",
                "listener=\"" + escapeLabel(l.name) + "\",route=\"" +
                    escapeLabel(ri < l.routes.size() ? l.routes[ri].name : "") + "\"",
                &WorkerStats::request_durations, slot);
    }
  }
  o << "# HELP sidetrace_upstream_responses_total Upstream response heads received, by cluster and "
       "status class.\n"
       "# TYPE sidetrace_upstream_responses_total counter\n";
  for (size_t c = 0; c < shared.clusters.size(); ++c) {
    for (size_t k = 0; k < kStatusClasses; ++k) {
      uint64_t n = sum([&](const WorkerStats& s) { return s.upstreamResponses(c, k); });
      if (n == 0 && k != 1) {
        continue;  // zero series only for 2xx
      }
      o << "sidetrace_upstream_responses_total{cluster=\"" << escapeLabel(cfg.clusters[c].name)
        << "\",status_class=\"" << kClassNames[k] << "\"} " << n << "\n";
    }
  }
  o << "# HELP sidetrace_upstream_duration_seconds Time from the start of an upstream attempt "
       "(connect included) to the upstream response head.\n"
       "# TYPE sidetrace_upstream_duration_seconds histogram\n";
  for (size_t c = 0; c < shared.clusters.size(); ++c) {
    histogram("sidetrace_upstream_duration_seconds",
              "cluster=\"" + escapeLabel(cfg.clusters[c].name) + "\"",
              &WorkerStats::upstream_durations, c);
  }
  o << "# HELP sidetrace_downstream_connections_active Open downstream connections.\n"
       "# TYPE sidetrace_downstream_connections_active gauge\n"
    << "sidetrace_downstream_connections_active "
    << sum([](const WorkerStats& s) { return static_cast<uint64_t>(s.active_connections.load()); })
    << "\n"
    << "# HELP sidetrace_downstream_connections_total Accepted downstream connections.\n"
       "# TYPE sidetrace_downstream_connections_total counter\n"
    << "sidetrace_downstream_connections_total "
    << sum([](const WorkerStats& s) { return s.connections_total.load(); }) << "\n"
    << "# HELP sidetrace_downstream_rejected_total Requests rejected before routing "
       "(400/408/431).\n"
       "# TYPE sidetrace_downstream_rejected_total counter\n"
    << "sidetrace_downstream_rejected_total "
    << sum([](const WorkerStats& s) { return s.bad_requests.load(); }) << "\n";
  o << "# HELP sidetrace_upstream_connect_failures_total Upstream connections refused or failed.\n"
       "# TYPE sidetrace_upstream_connect_failures_total counter\n";
  for (size_t c = 0; c < shared.clusters.size(); ++c) {
    o << "sidetrace_upstream_connect_failures_total{cluster=\"" << escapeLabel(cfg.clusters[c].name)
      << "\"} " << sum([&](const WorkerStats& s) { return s.connect_failures[c].load(); }) << "\n";
  }
  o << "# HELP sidetrace_upstream_timeouts_total Upstream connect or route timeouts.\n"
       "# TYPE sidetrace_upstream_timeouts_total counter\n";
  for (size_t c = 0; c < shared.clusters.size(); ++c) {
    o << "sidetrace_upstream_timeouts_total{cluster=\"" << escapeLabel(cfg.clusters[c].name)
      << "\"} " << sum([&](const WorkerStats& s) { return s.upstream_timeouts[c].load(); }) << "\n";
  }
  tracing::PipelineStats empty;
  tracing::PipelineStats& ps = shared.processor != nullptr ? shared.processor->stats() : empty;
  o << "# HELP sidetrace_spans_started_total Spans started (sampled or not).\n"
       "# TYPE sidetrace_spans_started_total counter\n"
    << "sidetrace_spans_started_total " << ps.spans_started.load() << "\n"
    << "# HELP sidetrace_spans_sampled_total Sampled spans ended and offered to the export queue.\n"
       "# TYPE sidetrace_spans_sampled_total counter\n"
    << "sidetrace_spans_sampled_total " << ps.spans_sampled.load() << "\n"
    << "# HELP sidetrace_spans_exported_total Spans accepted by the exporter.\n"
       "# TYPE sidetrace_spans_exported_total counter\n"
    << "sidetrace_spans_exported_total " << ps.spans_exported.load() << "\n"
    << "# HELP sidetrace_spans_dropped_total Spans dropped, by reason.\n"
       "# TYPE sidetrace_spans_dropped_total counter\n"
    << "sidetrace_spans_dropped_total{reason=\"queue_full\"} " << ps.spans_dropped_queue_full.load()
    << "\n"
    << "sidetrace_spans_dropped_total{reason=\"export_failed\"} "
    << ps.spans_dropped_export_failed.load() << "\n"
    << "# HELP sidetrace_spans_rejected_total Spans in successful exports that the collector "
       "reported as rejected (OTLP partial success).\n"
       "# TYPE sidetrace_spans_rejected_total counter\n"
    << "sidetrace_spans_rejected_total " << ps.spans_rejected.load() << "\n"
    << "# HELP sidetrace_export_requests_total Export calls to the collector, by outcome.\n"
       "# TYPE sidetrace_export_requests_total counter\n"
    << "sidetrace_export_requests_total{outcome=\"ok\"} " << ps.export_requests_ok.load() << "\n"
    << "sidetrace_export_requests_total{outcome=\"failed\"} " << ps.export_requests_failed.load()
    << "\n"
    << "# HELP sidetrace_export_queue_size Spans waiting in the export queue.\n"
       "# TYPE sidetrace_export_queue_size gauge\n"
    << "sidetrace_export_queue_size " << ps.queue_size.load() << "\n"
    << "# HELP sidetrace_process_resident_memory_bytes Resident set size.\n"
       "# TYPE sidetrace_process_resident_memory_bytes gauge\n"
    << "sidetrace_process_resident_memory_bytes " << residentBytes() << "\n"
    << "# HELP sidetrace_process_start_time_seconds Start time of the process since the Unix "
       "epoch.\n"
       "# TYPE sidetrace_process_start_time_seconds gauge\n"
    << "sidetrace_process_start_time_seconds " << fmt::format("{:.3f}", processStartSeconds())
    << "\n"
    << "# HELP sidetrace_uptime_seconds Seconds since the process started.\n"
       "# TYPE sidetrace_uptime_seconds gauge\n"
    << "sidetrace_uptime_seconds " << fmt::format("{:.3f}", uptimeSeconds()) << "\n"
    << "# HELP sidetrace_draining 1 while shutting down.\n"
       "# TYPE sidetrace_draining gauge\n"
    << "sidetrace_draining " << (draining ? 1 : 0) << "\n";
  return o.str();
}

int runServer(config::ConfigPtr cfg) {
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<AccessLog> access_log;
  try {
    access_log = AccessLog::open(cfg->access_log);
  } catch (const std::exception& e) {
    spdlog::error("access_log.path: {}", e.what());
    return 1;
  }
  SharedState shared{cfg, {}, nullptr, nullptr, RouteIndex(*cfg), {}, access_log.get()};
  try {
    shared.clusters = upstream::resolveClusters(*cfg);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  for (const auto& l : cfg->listeners) {
    std::vector<size_t> m;
    for (const auto& r : l.routes) {
      size_t idx = static_cast<size_t>(-1);
      for (size_t c = 0; c < cfg->clusters.size(); ++c) {
        if (cfg->clusters[c].name == r.cluster) {
          idx = c;
        }
      }
      m.push_back(idx);
    }
    shared.route_cluster.push_back(std::move(m));
  }
  shared.sampler = tracing::makeSampler(cfg->tracing.sampler.type, cfg->tracing.sampler.ratio);
  std::unique_ptr<tracing::BatchSpanProcessor> processor;
  if (cfg->tracing.enabled) {
    auto exporter = tracing::makeExporter(cfg->tracing.exporter);
    if (exporter) {
      processor = std::make_unique<tracing::BatchSpanProcessor>(
          std::move(exporter), cfg->tracing.batch, tracing::makeResource(cfg->tracing));
      shared.processor = processor.get();
    }
  }

  unsigned n = cfg->workers != 0 ? cfg->workers : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < n; ++i) {
    workers.push_back(std::make_unique<Worker>(i, shared));
    try {
      workers.back()->bind();
    } catch (const boost::system::system_error& e) {
      spdlog::error("cannot listen: {}", e.what());
      return 2;
    }
  }

  asio::io_context io;
  bool draining = false;
  std::unique_ptr<AdminServer> admin;
  if (cfg->admin.enabled) {
    try {
      admin = std::make_unique<AdminServer>(
          io, cfg->admin.address, [&](const filters::RequestHead& req) {
            std::string_view path = req.path();
            if (path == "/ready") {
              return draining ? AdminResponse{503, "text/plain", "draining\n"}
                              : AdminResponse{200, "text/plain", "ready\n"};
            }
            if (path == "/metrics") {
              return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                   renderMetrics(shared, workers, draining)};
            }
            return AdminResponse{404, "text/plain", "not found\n"};
          });
    } catch (const boost::system::system_error& e) {
      spdlog::error("cannot listen on admin address {}: {}", cfg->admin.address.str(), e.what());
      return 2;
    }
    admin->start();
  }
  for (auto& w : workers) {
    w->start();
  }
  for (const auto& l : cfg->listeners) {
    spdlog::info("listener '{}' on {} ({} worker{})", l.name, l.address.str(), n,
                 n == 1 ? "" : "s");
  }
  if (admin) {
    spdlog::info("admin on {}", cfg->admin.address.str());
  }

  // SIGUSR1: reopen the access log file (logrotate's postrotate), as nginx does.
  asio::signal_set reopen_signal(io, SIGUSR1);
  std::function<void()> arm_reopen = [&]() {
    reopen_signal.async_wait([&](boost::system::error_code ec, int) {
      if (ec) {
        return;
      }
      if (access_log) {
        access_log->reopen();
        spdlog::info("SIGUSR1: access log reopened");
      }
      arm_reopen();
    });
  };
  arm_reopen();
  asio::signal_set signals(io, SIGTERM, SIGINT);
  asio::steady_timer drain_timer(io);
  auto deadline = std::chrono::steady_clock::now();
  std::function<void()> poll = [&]() {
    int64_t active = 0;
    for (auto& w : workers) {
      active += w->activeConnections();
    }
    if (active == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (active != 0) {
        spdlog::warn("drain timeout: closing {} connection(s)", active);
      }
      io.stop();
      return;
    }
    drain_timer.expires_after(std::chrono::milliseconds(20));
    drain_timer.async_wait([&](boost::system::error_code ec) {
      if (!ec) {
        poll();
      }
    });
  };
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) {
      return;
    }
    spdlog::info("signal {}: draining (up to {} ms)", sig, cfg->limits.drain_timeout.count());
    draining = true;
    deadline = std::chrono::steady_clock::now() + cfg->limits.drain_timeout;
    for (auto& w : workers) {
      w->beginDrain();
    }
    poll();
  });
  io.run();

  for (auto& w : workers) {
    w->stop();
  }
  if (processor) {
    processor->shutdown(cfg->tracing.batch.export_timeout);
  }
  workers.clear();
  spdlog::info("stopped");
  return 0;
}

}  // namespace sidetrace::proxy
