#include "proxy/server.h"

#include <signal.h>

#include <spdlog/spdlog.h>
#include <atomic>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "config/dump.h"
#include "proxy/access_log.h"
#include "proxy/admin.h"
#include "proxy/openmetrics.h"
#include "proxy/otlp_http_client.h"
#include "proxy/self_log.h"
#include "proxy/tls_context.h"
#include "proxy/tracez_admin.h"
#include "proxy/worker.h"
#include "tracing/exporter.h"
#include "tracing/tracer.h"

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

// What one scrape reads: the generation (config, slots, clusters) and every worker's counters,
// summed, written to one stream.
struct Scrape {
  const Generation& gen;
  const config::Config& cfg;
  const std::vector<std::unique_ptr<Worker>>& workers;
  std::ostream& o;
  bool exemplars = false;  // OpenMetrics: request duration buckets carry exemplars

  template <typename Fn>
  uint64_t sum(Fn fn) const {
    uint64_t n = 0;
    for (const auto& w : workers) {
      n += fn(w->stats());
    }
    return n;
  }
};

// Calls fn(listener, route name, slot, is_real_route) for each listener's routes and then its
// no-route slot, once per slot: routes sharing a name share a slot (and a series).
template <typename Fn>
void forEachRouteSlot(const Scrape& s, Fn fn) {
  static const std::string kNoRoute;
  std::vector<char> seen;
  for (size_t li = 0; li < s.cfg.listeners.size(); ++li) {
    const auto& l = s.cfg.listeners[li];
    for (size_t ri = 0; ri <= l.routes.size(); ++ri) {
      const bool real = ri < l.routes.size();
      size_t slot = real ? s.gen.routeSlot(li, ri) : s.gen.noRouteSlot(li);
      if (slot >= seen.size()) {
        seen.resize(slot + 1, false);
      }
      if (std::exchange(seen[slot], 1) != 0) {
        continue;
      }
      fn(l, real ? l.routes[ri].name : kNoRoute, slot, real);
    }
  }
}

// " # {trace_id=..,span_id=..} seconds unix_seconds" for request_durations bucket b of `series`:
// the latest sampled request of any worker in that bucket (nothing when none).
void writeExemplar(const Scrape& s, size_t series, size_t b) {
  std::optional<Exemplar> best;
  for (const auto& w : s.workers) {
    if (const ExemplarSlots* ex = w->stats().request_exemplars.get()) {
      auto e = ex->read(series, b);
      if (e && (!best || e->unix_nanos > best->unix_nanos)) {
        best = e;
      }
    }
  }
  if (best) {
    s.o << fmt::format(" # {{trace_id=\"{}\",span_id=\"{}\"}} {:.9f} {:.3f}", best->trace_id.hex(),
                       best->span_id.hex(), static_cast<double>(best->duration_nanos) / 1e9,
                       static_cast<double>(best->unix_nanos) / 1e9);
  }
}

// One histogram series: buckets, +Inf, sum, count.
void writeHistogram(const Scrape& s, std::string_view name, const std::string& labels,
                    DurationHistograms WorkerStats::*member, size_t series) {
  auto get = [&](auto fn) { return s.sum([&](const WorkerStats& w) { return fn(w.*member); }); };
  std::ostream& o = s.o;
  uint64_t count = get([&](const DurationHistograms& h) { return h.count(series); });
  const bool exemplars = s.exemplars && member == &WorkerStats::request_durations;
  for (size_t b = 0; b < kDurationBuckets.size(); ++b) {
    o << name << "_bucket{" << labels << ",le=\"" << kDurationBuckets[b] << "\"} "
      << get([&](const DurationHistograms& h) { return h.bucket(series, b); });
    if (exemplars) {
      writeExemplar(s, series, b);
    }
    o << "\n";
  }
  o << name << "_bucket{" << labels << ",le=\"+Inf\"} " << count;
  if (exemplars) {
    writeExemplar(s, series, kDurationBuckets.size());
  }
  o << "\n";
  o << name << "_sum{" << labels << "} "
    << static_cast<double>(get([&](const DurationHistograms& h) { return h.sumNanos(series); })) /
           1e9
    << "\n";
  o << name << "_count{" << labels << "} " << count << "\n";
}

// Per route: requests by status class, then request durations.
void writeDownstreamRequests(const Scrape& s) {
  s.o << "# HELP sidetrace_downstream_requests_total Requests answered, by listener, route and "
         "status class.\n"
         "# TYPE sidetrace_downstream_requests_total counter\n";
  forEachRouteSlot(
      s, [&](const config::Listener& l, const std::string& route, size_t slot, bool real) {
        for (size_t c = 0; c < kStatusClasses; ++c) {
          uint64_t n = s.sum([&](const WorkerStats& w) { return w.requests(slot, c); });
          if (n == 0 && !(c == 1 && real)) {
            continue;  // keep the output small: zero series only for 2xx of real routes
          }
          s.o << "sidetrace_downstream_requests_total{listener=\"" << escapeLabel(l.name)
              << "\",route=\"" << escapeLabel(route) << "\",status_class=\"" << kClassNames[c]
              << "\"} " << n << "\n";
        }
      });
  s.o << "# HELP sidetrace_request_duration_seconds Time from request head to response end.\n"
         "# TYPE sidetrace_request_duration_seconds histogram\n";
  forEachRouteSlot(s, [&](const config::Listener& l, const std::string& route, size_t slot,
                          bool real) {
    if (!real &&
        s.sum([&](const WorkerStats& w) { return w.request_durations.count(slot); }) == 0) {
      return;
    }
    writeHistogram(s, "sidetrace_request_duration_seconds",
                   "listener=\"" + escapeLabel(l.name) + "\",route=\"" + escapeLabel(route) + "\"",
                   &WorkerStats::request_durations, slot);
  });
}

// Per cluster: upstream response heads by status class, then upstream durations.
void writeUpstreamResponses(const Scrape& s) {
  const auto& clusters = s.cfg.clusters;
  s.o << "# HELP sidetrace_upstream_responses_total Upstream response heads received, by cluster "
         "and status class.\n"
         "# TYPE sidetrace_upstream_responses_total counter\n";
  for (size_t c = 0; c < clusters.size(); ++c) {
    const size_t cs = s.gen.cluster_slots[c];
    for (size_t k = 0; k < kStatusClasses; ++k) {
      uint64_t n = s.sum([&](const WorkerStats& w) { return w.upstreamResponses(cs, k); });
      if (n == 0 && k != 1) {
        continue;  // zero series only for 2xx
      }
      s.o << "sidetrace_upstream_responses_total{cluster=\"" << escapeLabel(clusters[c].name)
          << "\",status_class=\"" << kClassNames[k] << "\"} " << n << "\n";
    }
  }
  s.o << "# HELP sidetrace_upstream_duration_seconds Time from the start of an upstream attempt "
         "(connect included) to the upstream response head.\n"
         "# TYPE sidetrace_upstream_duration_seconds histogram\n";
  for (size_t c = 0; c < clusters.size(); ++c) {
    writeHistogram(s, "sidetrace_upstream_duration_seconds",
                   "cluster=\"" + escapeLabel(clusters[c].name) + "\"",
                   &WorkerStats::upstream_durations, s.gen.cluster_slots[c]);
  }
}

void writeDownstreamConnections(const Scrape& s) {
  s.o << "# HELP sidetrace_downstream_connections_active Open downstream connections.\n"
         "# TYPE sidetrace_downstream_connections_active gauge\n"
      << "sidetrace_downstream_connections_active " << s.sum([](const WorkerStats& w) {
           return static_cast<uint64_t>(w.active_connections.load());
         })
      << "\n"
      << "# HELP sidetrace_downstream_connections_total Accepted downstream connections.\n"
         "# TYPE sidetrace_downstream_connections_total counter\n"
      << "sidetrace_downstream_connections_total "
      << s.sum([](const WorkerStats& w) { return w.connections_total.load(); }) << "\n"
      << "# HELP sidetrace_downstream_connections_overflow_total Connections closed right after "
         "accept because limits.max_connections were open.\n"
         "# TYPE sidetrace_downstream_connections_overflow_total counter\n"
      << "sidetrace_downstream_connections_overflow_total "
      << s.sum([](const WorkerStats& w) { return w.connections_overflow.load(); }) << "\n"
      << "# HELP sidetrace_downstream_accept_failures_total Failed accepts (out of file "
         "descriptors or kernel memory: the listener pauses 100ms after one).\n"
         "# TYPE sidetrace_downstream_accept_failures_total counter\n"
      << "sidetrace_downstream_accept_failures_total "
      << s.sum([](const WorkerStats& w) { return w.accept_failures.load(); }) << "\n"
      << "# HELP sidetrace_downstream_rejected_total Requests rejected before routing "
         "(400/408/431).\n"
         "# TYPE sidetrace_downstream_rejected_total counter\n"
      << "sidetrace_downstream_rejected_total "
      << s.sum([](const WorkerStats& w) { return w.bad_requests.load(); }) << "\n";
  s.o << "# HELP sidetrace_downstream_tls_handshake_failures_total Downstream TLS handshakes that "
         "failed or timed out (not TLS, old protocol, no shared cipher, client certificate "
         "refused, closed early), by listener.\n"
         "# TYPE sidetrace_downstream_tls_handshake_failures_total counter\n";
  for (size_t li = 0; li < s.cfg.listeners.size(); ++li) {
    if (!s.cfg.listeners[li].tls) {
      continue;
    }
    s.o << "sidetrace_downstream_tls_handshake_failures_total{listener=\""
        << escapeLabel(s.cfg.listeners[li].name) << "\"} "
        << s.sum([&](const WorkerStats& w) { return w.tls_handshake_failures[li].load(); }) << "\n";
  }
}

// Connect failures, upstream TLS handshake failures and retries, per cluster.
void writeUpstreamAttempts(const Scrape& s) {
  const auto& clusters = s.cfg.clusters;
  s.o << "# HELP sidetrace_upstream_connect_failures_total Upstream connections refused or "
         "failed.\n"
         "# TYPE sidetrace_upstream_connect_failures_total counter\n";
  for (size_t c = 0; c < clusters.size(); ++c) {
    const size_t cs = s.gen.cluster_slots[c];
    s.o << "sidetrace_upstream_connect_failures_total{cluster=\"" << escapeLabel(clusters[c].name)
        << "\"} " << s.sum([&](const WorkerStats& w) { return w.connect_failures[cs].load(); })
        << "\n";
  }
  s.o << "# HELP sidetrace_upstream_tls_handshake_failures_total Upstream TLS handshakes that "
         "failed (certificate or name refused, no common protocol, not a TLS server), by "
         "cluster; also counted as connect failures.\n"
         "# TYPE sidetrace_upstream_tls_handshake_failures_total counter\n";
  for (size_t c = 0; c < clusters.size(); ++c) {
    if (!clusters[c].tls) {
      continue;
    }
    const size_t cs = s.gen.cluster_slots[c];
    s.o << "sidetrace_upstream_tls_handshake_failures_total{cluster=\""
        << escapeLabel(clusters[c].name) << "\"} "
        << s.sum([&](const WorkerStats& w) { return w.upstream_tls_handshake_failures[cs].load(); })
        << "\n";
  }
  s.o << "# HELP sidetrace_upstream_retries_total Retries by cluster and outcome: attempted (a "
         "retry sent), succeeded / exhausted (requests that retried and finally succeeded / "
         "still failed), overflow (a retriable failure not retried: retry budget full).\n"
         "# TYPE sidetrace_upstream_retries_total counter\n";
  static constexpr const char* kOutcomes[] = {"attempted", "succeeded", "exhausted", "overflow"};
  for (size_t c = 0; c < clusters.size(); ++c) {
    const size_t cs = s.gen.cluster_slots[c];
    for (size_t k = 0; k < WorkerStats::kRetryOutcomes; ++k) {
      s.o << "sidetrace_upstream_retries_total{cluster=\"" << escapeLabel(clusters[c].name)
          << "\",outcome=\"" << kOutcomes[k] << "\"} " << s.sum([&](const WorkerStats& w) {
               return w.retries[cs * WorkerStats::kRetryOutcomes + k].load();
             })
          << "\n";
    }
  }
}

// Per-endpoint series, read from the generation's shared endpoint sets rather than the workers:
// health verdicts, load balancer picks, ejections and which addresses DNS still returns.
void writeEndpoints(const Scrape& s) {
  s.o << "# HELP sidetrace_upstream_endpoint_healthy Active health check verdict per endpoint of "
         "health-checked clusters (1 in rotation, 0 out).\n"
         "# TYPE sidetrace_upstream_endpoint_healthy gauge\n";
  for (const auto& rc : s.gen.clusters) {
    if (!rc.health) {
      continue;
    }
    for (size_t i = 0, n = rc.endpoints->size(); i < n; ++i) {
      if (rc.endpoints->present(i)) {
        s.o << "sidetrace_upstream_endpoint_healthy{cluster=\"" << escapeLabel(rc.cfg->name)
            << "\",endpoint=\"" << (*rc.endpoints)[i].label << "\"} "
            << (rc.health->healthy(i) ? 1 : 0) << "\n";
      }
    }
  }
  s.o << "# HELP sidetrace_upstream_lb_picks_total Request attempts the load balancer sent to "
         "each endpoint (retries included) since the last reload.\n"
         "# TYPE sidetrace_upstream_lb_picks_total counter\n";
  for (const auto& rc : s.gen.clusters) {
    for (size_t i = 0, n = rc.endpoints->size(); i < n; ++i) {
      s.o << "sidetrace_upstream_lb_picks_total{cluster=\"" << escapeLabel(rc.cfg->name)
          << "\",endpoint=\"" << (*rc.endpoints)[i].label << "\"} " << rc.endpoints->picks(i)
          << "\n";
    }
  }
  s.o << "# HELP sidetrace_upstream_endpoint_ejections_total Outlier-detection ejections of each "
         "endpoint (by any worker) since the last reload.\n"
         "# TYPE sidetrace_upstream_endpoint_ejections_total counter\n";
  for (const auto& rc : s.gen.clusters) {
    if (!rc.outliers) {
      continue;
    }
    for (size_t i = 0, n = rc.endpoints->size(); i < n; ++i) {
      s.o << "sidetrace_upstream_endpoint_ejections_total{cluster=\"" << escapeLabel(rc.cfg->name)
          << "\",endpoint=\"" << (*rc.endpoints)[i].label << "\"} " << rc.endpoints->ejections(i)
          << "\n";
    }
  }
  s.o << "# HELP sidetrace_upstream_endpoints Endpoints per cluster: every address its endpoints "
         "resolve to, by whether DNS still returns it.\n"
         "# TYPE sidetrace_upstream_endpoints gauge\n";
  for (const auto& rc : s.gen.clusters) {
    const size_t present = rc.endpoints->presentCount();
    s.o << "sidetrace_upstream_endpoints{cluster=\"" << escapeLabel(rc.cfg->name)
        << "\",state=\"present\"} " << present << "\n";
    s.o << "sidetrace_upstream_endpoints{cluster=\"" << escapeLabel(rc.cfg->name)
        << "\",state=\"removed\"} " << rc.endpoints->size() - present << "\n";
  }
}

// Per-cluster protection counters: outlier ejections, circuit breaker trips, timeouts.
void writeUpstreamProtection(const Scrape& s) {
  const auto& clusters = s.cfg.clusters;
  s.o << "# HELP sidetrace_upstream_ejections_total Endpoints ejected by outlier detection "
         "(consecutive failures), per worker and time, summed.\n"
         "# TYPE sidetrace_upstream_ejections_total counter\n";
  for (size_t c = 0; c < clusters.size(); ++c) {
    const size_t cs = s.gen.cluster_slots[c];
    s.o << "sidetrace_upstream_ejections_total{cluster=\"" << escapeLabel(clusters[c].name)
        << "\"} " << s.sum([&](const WorkerStats& w) { return w.ejections[cs].load(); }) << "\n";
  }
  s.o << "# HELP sidetrace_upstream_circuit_breaker_trips_total Requests answered 503 at once "
         "because a cluster's circuit breaker (connections, pending, requests, retries) was "
         "full.\n"
         "# TYPE sidetrace_upstream_circuit_breaker_trips_total counter\n";
  static constexpr const char* kBreakerNames[] = {"connections", "pending", "requests", "retries"};
  for (size_t c = 0; c < clusters.size(); ++c) {
    const size_t cs = s.gen.cluster_slots[c];
    for (size_t k = 0; k < WorkerStats::kBreakers; ++k) {
      s.o << "sidetrace_upstream_circuit_breaker_trips_total{cluster=\""
          << escapeLabel(clusters[c].name) << "\",breaker=\"" << kBreakerNames[k] << "\"} "
          << s.sum([&](const WorkerStats& w) {
               return w.breaker_trips[cs * WorkerStats::kBreakers + k].load();
             })
          << "\n";
    }
  }
  s.o << "# HELP sidetrace_upstream_timeouts_total Upstream connect or route timeouts.\n"
         "# TYPE sidetrace_upstream_timeouts_total counter\n";
  for (size_t c = 0; c < clusters.size(); ++c) {
    const size_t cs = s.gen.cluster_slots[c];
    s.o << "sidetrace_upstream_timeouts_total{cluster=\"" << escapeLabel(clusters[c].name) << "\"} "
        << s.sum([&](const WorkerStats& w) { return w.upstream_timeouts[cs].load(); }) << "\n";
  }
}

// The span pipeline (sampling, export queue, exporter) and the access log queue.
// Only with an egress listener. The registry is the process's (it outlives reloads), so these
// count since start.
void writeEgress(const Scrape& s) {
  const filters::InflightRegistry* r = s.gen.inflight.get();
  if (r == nullptr) {
    return;
  }
  using filters::ParentSource;
  s.o << "# HELP sidetrace_egress_parent_total Outbound requests on the egress listener by the "
         "rule that chose their span's parent.\n"
         "# TYPE sidetrace_egress_parent_total counter\n";
  for (auto src : {ParentSource::Header, ParentSource::RequestId, ParentSource::Process,
                   ParentSource::SingleInflight, ParentSource::None}) {
    s.o << "sidetrace_egress_parent_total{source=\"" << filters::parentSourceName(src) << "\"} "
        << r->parents(src) << "\n";
  }
  s.o << "# HELP sidetrace_egress_denied_total Egress requests refused (403) because egress.allow "
         "does not list their destination.\n"
         "# TYPE sidetrace_egress_denied_total counter\n"
      << "sidetrace_egress_denied_total " << r->denied() << "\n"
      << "# HELP sidetrace_egress_process_skipped_total Outbound requests the process parent rule "
         "could not judge: over its time budget, or the app's sockets not visible.\n"
         "# TYPE sidetrace_egress_process_skipped_total counter\n"
      << "sidetrace_egress_process_skipped_total{reason=\"budget\"} " << r->processOverBudget()
      << "\n"
      << "sidetrace_egress_process_skipped_total{reason=\"unavailable\"} "
      << r->processUnavailable() << "\n"
      << "# HELP sidetrace_egress_inbound_in_flight Inbound requests handed to the app and not yet "
         "answered: the candidates for an outbound call's parent.\n"
         "# TYPE sidetrace_egress_inbound_in_flight gauge\n"
      << "sidetrace_egress_inbound_in_flight " << r->size() << "\n"
      << "# HELP sidetrace_egress_tunnels_total CONNECT tunnels opened on the egress listener.\n"
         "# TYPE sidetrace_egress_tunnels_total counter\n"
      << "sidetrace_egress_tunnels_total " << r->tunnelsTotal() << "\n"
      << "# HELP sidetrace_egress_tunnels_active CONNECT tunnels open now.\n"
         "# TYPE sidetrace_egress_tunnels_active gauge\n"
      << "sidetrace_egress_tunnels_active " << r->tunnelsActive() << "\n";
}

uint64_t spansStarted(const std::vector<std::unique_ptr<Worker>>& workers) {
  uint64_t n = 0;
  for (const auto& w : workers) {
    n += w->spansStarted();
  }
  return n;
}

void writeExportPipeline(std::ostream& o, const tracing::PipelineStats& ps, uint64_t started,
                         uint64_t access_log_dropped) {
  o << "# HELP sidetrace_spans_started_total Spans started (sampled or not).\n"
       "# TYPE sidetrace_spans_started_total counter\n"
    << "sidetrace_spans_started_total " << started << "\n"
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
    << "sidetrace_spans_dropped_total{reason=\"too_large\"} " << ps.spans_dropped_too_large.load()
    << "\n"
    << "# HELP sidetrace_access_log_dropped_total Access log lines dropped because the queue to "
       "the log thread was full (lines or max_queue_bytes).\n"
       "# TYPE sidetrace_access_log_dropped_total counter\n"
    << "sidetrace_access_log_dropped_total " << access_log_dropped << "\n"
    << "# HELP sidetrace_spans_rejected_total Spans in successful exports that the collector "
       "reported as rejected (OTLP partial success).\n"
       "# TYPE sidetrace_spans_rejected_total counter\n"
    << "sidetrace_spans_rejected_total " << ps.spans_rejected.load() << "\n"
    << "# HELP sidetrace_export_requests_total Export calls to the collector, by outcome.\n"
       "# TYPE sidetrace_export_requests_total counter\n"
    << "sidetrace_export_requests_total{outcome=\"ok\"} " << ps.export_requests_ok.load() << "\n"
    << "sidetrace_export_requests_total{outcome=\"failed\"} " << ps.export_requests_failed.load()
    << "\n"
    << "# HELP sidetrace_export_queue_size Spans waiting in the export queue (with those of a "
       "pipeline a reload replaced while it still exports).\n"
       "# TYPE sidetrace_export_queue_size gauge\n"
    << "sidetrace_export_queue_size " << ps.queue_size.load() << "\n";
}

// After the final flush no scrape can see the counters: the last log line says where every
// sampled span went (the soak run, tests/soak/, checks sampled == exported + dropped on it).
void logPipelineAtExit(const tracing::PipelineStats& ps, uint64_t started) {
  const uint64_t queue_full = ps.spans_dropped_queue_full.load();
  const uint64_t export_failed = ps.spans_dropped_export_failed.load();
  const uint64_t too_large = ps.spans_dropped_too_large.load();
  spdlog::info(
      "span pipeline at exit: started {}, sampled {}, exported {}, dropped {} (queue_full {}, "
      "export_failed {}, too_large {}), rejected {}",
      started, ps.spans_sampled.load(), ps.spans_exported.load(),
      queue_full + export_failed + too_large, queue_full, export_failed, too_large,
      ps.spans_rejected.load());
}

void writeProcess(std::ostream& o, bool draining) {
  o << "# HELP sidetrace_process_resident_memory_bytes Resident set size.\n"
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
}

}  // namespace

std::string renderMetrics(const Generation& gen, const tracing::PipelineStats& ps,
                          const std::vector<std::unique_ptr<Worker>>& workers, bool draining,
                          uint64_t access_log_dropped, bool exemplars) {
  std::ostringstream o;
  const Scrape s{gen, *gen.config, workers, o, exemplars};
  writeDownstreamRequests(s);
  writeUpstreamResponses(s);
  writeDownstreamConnections(s);
  writeUpstreamAttempts(s);
  writeEndpoints(s);
  writeUpstreamProtection(s);
  writeEgress(s);
  writeExportPipeline(o, ps, spansStarted(workers), access_log_dropped);
  writeProcess(o, draining);
  return o.str();
}

namespace {

// Why `next` cannot be applied by a reload, or "" when it can. Listeners, workers, the admin
// listener and the access log are bound at start (sockets, threads, files): changing them needs a
// restart, and a reload that tries is refused rather than half-applied.
std::string restartOnlyChange(const config::Config& cur, const config::Config& next) {
  if (next.listeners.size() != cur.listeners.size()) {
    return "listeners: " + std::to_string(cur.listeners.size()) + " → " +
           std::to_string(next.listeners.size()) + " listeners";
  }
  for (size_t i = 0; i < cur.listeners.size(); ++i) {
    const auto& a = cur.listeners[i];
    const auto& b = next.listeners[i];
    const std::string key = "listeners[" + std::to_string(i) + "]";
    if (a.name != b.name) {
      return key + ".name: '" + a.name + "' → '" + b.name + "'";
    }
    if (a.address.str() != b.address.str()) {
      return key + ".address: " + a.address.str() + " → " + b.address.str();
    }
    if (a.tls != b.tls) {
      return key + ".tls changed";
    }
  }
  if (next.workers != cur.workers) {
    return "workers: " + std::to_string(cur.workers) + " → " + std::to_string(next.workers);
  }
  if (next.admin.enabled != cur.admin.enabled ||
      next.admin.address.str() != cur.admin.address.str() ||
      next.admin.tracez_max_bytes != cur.admin.tracez_max_bytes) {
    return "admin changed";
  }
  if (next.log_format != cur.log_format) {
    return "log_format: " + cur.log_format + " → " + next.log_format;
  }
  if (next.access_log.path != cur.access_log.path ||
      next.access_log.format != cur.access_log.format ||
      next.access_log.max_queue_bytes != cur.access_log.max_queue_bytes) {
    return "access_log changed";
  }
  return "";
}

// Whether the span pipeline (exporter, batching, resource) must be rebuilt for `next`.
bool pipelineChanged(const config::TracingConfig& cur, const config::TracingConfig& next) {
  return cur.enabled != next.enabled || !(cur.exporter == next.exporter) ||
         !(cur.batch == next.batch) || cur.service_name != next.service_name ||
         cur.resource != next.resource;
}

// A listener name as the last field of a --ports-file line: backslash and newline escaped.
std::string escapeLine(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Writes `text` to `path` through a temporary file renamed into place, so whoever waits for the
// file never reads half of it.
bool writePortsFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) {
      spdlog::error("--ports-file: cannot write {}", tmp);
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    spdlog::error("--ports-file: cannot rename {} to {}: {}", tmp, path, std::strerror(errno));
    return false;
  }
  return true;
}

struct ReloadResult {
  bool ok = false;
  std::string message;
};

class Server {
 public:
  Server(config::ConfigPtr cfg, ConfigLoader load, std::string ports_file)
      : load_(std::move(load)), initial_(cfg), ports_file_(std::move(ports_file)) {}
  int run();

 private:
  std::unique_ptr<tracing::BatchSpanProcessor> makeProcessor(const config::TracingConfig& t);
  ReloadResult reload(std::string_view trigger);
  ReloadResult applyReload();
  AdminResponse handleAdmin(const filters::RequestHead& req, bool from_loopback);
  void waitForDrain();
  // Binds every worker's listeners and the admin listener, starts the workers and reports the
  // bound addresses (log, --ports-file). Returns 0, or the exit code when something cannot bind.
  int bindAndStart(const std::vector<TlsServerContext*>& tls, std::unique_ptr<AdminServer>& admin);

  ConfigLoader load_;
  config::ConfigPtr initial_;
  std::string ports_file_;  // "": none
  // Metric slots for the routes and clusters of every generation; the capacity leaves room for
  // reloads to add routes and clusters without reallocating the workers' counters.
  std::unique_ptr<StatsSlots> slots_;
  std::shared_ptr<const Generation> gen_;
  tracing::PipelineStats pipeline_stats_;  // outlives every processor: counters survive reloads
  std::unique_ptr<tracing::BatchSpanProcessor> processor_;
  struct Retiring {  // a processor a reload replaced, flushing on its own thread
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Retiring> retiring_;
  std::vector<std::unique_ptr<TlsServerContext>> tls_;  // per listener (null: plain); restart-only
  std::atomic<int64_t> open_connections_{0};            // every worker's downstream connections
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<AccessLog> access_log_;
  asio::io_context io_;
  bool draining_ = false;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
};

std::unique_ptr<tracing::BatchSpanProcessor> Server::makeProcessor(const config::TracingConfig& t) {
  if (!t.enabled) {
    return nullptr;
  }
  auto exporter = tracing::makeExporter(t.exporter, makeOtlpHttpTransport);
  if (!exporter) {
    return nullptr;
  }
  return std::make_unique<tracing::BatchSpanProcessor>(std::move(exporter), t.batch,
                                                       tracing::makeResource(t), &pipeline_stats_);
}

ReloadResult Server::reload(std::string_view trigger) {
  ReloadResult r = applyReload();
  if (r.ok) {
    ++reloads_ok_;
    spdlog::info("reload ({}): {}", trigger, r.message);
  } else {
    ++reloads_failed_;
    spdlog::error("reload ({}) refused, the running config stays: {}", trigger, r.message);
  }
  return r;
}

ReloadResult Server::applyReload() {
  if (draining_) {
    return {false, "draining"};
  }
  config::ConfigPtr next;
  try {
    next = std::make_shared<const config::Config>(load_());
  } catch (const std::exception& e) {
    return {false, e.what()};
  }
  const config::Config& cur = *gen_->config;
  if (std::string why = restartOnlyChange(cur, *next); !why.empty()) {
    return {false, why + " (needs a restart)"};
  }
  std::shared_ptr<const Generation> gen;
  try {
    gen = buildGeneration(next, *slots_, gen_.get());
  } catch (const std::exception& e) {
    return {false, e.what()};
  }
  std::unique_ptr<tracing::BatchSpanProcessor> fresh;
  const bool new_pipeline = pipelineChanged(cur.tracing, next->tracing);
  if (new_pipeline) {
    try {
      fresh = makeProcessor(next->tracing);
    } catch (const std::exception& e) {
      return {false, std::string("tracing.exporter: ") + e.what()};
    }
  }
  tracing::BatchSpanProcessor* target = new_pipeline ? fresh.get() : processor_.get();

  // Switch every worker and wait until all have: after a 200 from POST /reload, every new request
  // sees the new config. Workers never block (and run until drain, when reloads are refused), so
  // this takes microseconds.
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    size_t left;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = workers_.size();
  for (auto& w : workers_) {
    w->switchTo(gen, target, [pending] {
      std::lock_guard lock(pending->mu);
      if (--pending->left == 0) {
        pending->cv.notify_all();
      }
    });
  }
  {
    std::unique_lock lock(pending->mu);
    // No timeout: the old pipeline may only retire once no worker can hand it spans any more.
    pending->cv.wait(lock, [&] { return pending->left == 0; });
  }
  if (new_pipeline) {
    // The old pipeline exports what it still holds (up to its export timeout) off this thread.
    std::erase_if(retiring_, [](Retiring& r) {
      if (!r.done->load()) {
        return false;
      }
      r.thread.join();
      return true;
    });
    if (processor_) {
      auto timeout = cur.tracing.batch.export_timeout;
      auto done = std::make_shared<std::atomic<bool>>(false);
      retiring_.push_back({std::thread([old = std::move(processor_), timeout, done] {
                             old->shutdown(timeout);
                             done->store(true);
                           }),
                           done});
    }
    processor_ = std::move(fresh);
  }
  gen_ = std::move(gen);
  setSelfLogLevel(gen_->config->log_level);  // not spdlog::set_level: the access log stays at info
  size_t routes = 0;
  for (const auto& l : gen_->config->listeners) {
    routes += l.routes.size();
  }
  return {true, "applied: " + std::to_string(routes) + " route(s), " +
                    std::to_string(gen_->config->clusters.size()) + " cluster(s), sampler " +
                    gen_->config->tracing.sampler.type + ", exporter " +
                    (new_pipeline ? "restarted" : "unchanged")};
}

AdminResponse Server::handleAdmin(const filters::RequestHead& req, bool from_loopback) {
  std::string_view path = req.path();
  if ((path == "/reload" || path == "/config_dump" || path == "/tracez") && !from_loopback) {
    // Probes and scrapes come from the pod network; control stays inside the pod (admin.h), and
    // so do the recent traces (request paths, client addresses, header attributes).
    return AdminResponse{
        403, "text/plain",
        "forbidden: " + std::string(path) + " answers only on loopback (127.0.0.1, ::1)\n"};
  }
  if (path == "/ready") {
    return draining_ ? AdminResponse{503, "text/plain", "draining\n"}
                     : AdminResponse{200, "text/plain", "ready\n"};
  }
  if (path == "/metrics") {
    // OpenMetrics when the scraper asks for it (Prometheus does): the format with exemplars.
    const bool openmetrics = acceptsOpenMetrics(req.headers.get("accept").value_or(""));
    std::string text = renderMetrics(*gen_, pipeline_stats_, workers_, draining_,
                                     access_log_ ? access_log_->dropped() : 0, openmetrics);
    text += fmt::format(
        "# HELP sidetrace_config_reloads_total Config reloads (SIGHUP, POST /reload), by "
        "outcome.\n"
        "# TYPE sidetrace_config_reloads_total counter\n"
        "sidetrace_config_reloads_total{{outcome=\"ok\"}} {}\n"
        "sidetrace_config_reloads_total{{outcome=\"refused\"}} {}\n",
        reloads_ok_, reloads_failed_);
    if (openmetrics) {
      return AdminResponse{200, std::string(kOpenMetricsContentType), toOpenMetrics(text)};
    }
    return AdminResponse{200, "text/plain; version=0.0.4; charset=utf-8", std::move(text)};
  }
  if (path == "/config_dump") {
    return AdminResponse{200, "application/json", config::dumpConfigJson(*gen_->config)};
  }
  if (path == "/tracez") {
    return tracezResponse(req, workers_, initial_->admin.tracez_max_bytes);
  }
  if (path == "/reload") {
    if (req.method != "POST") {
      return AdminResponse{405, "text/plain", "use POST /reload\n"};
    }
    ReloadResult r = reload("POST /reload");
    // As Prometheus' /-/reload: 200 when applied, 500 with the reason when refused.
    return r.ok ? AdminResponse{200, "text/plain", "reloaded: " + r.message + "\n"}
                : AdminResponse{500, "text/plain", "reload refused: " + r.message + "\n"};
  }
  return AdminResponse{404, "text/plain", "not found\n"};
}

int Server::bindAndStart(const std::vector<TlsServerContext*>& tls,
                         std::unique_ptr<AdminServer>& admin) {
  const config::Config& cfg = *initial_;
  const size_t n = workerCount(cfg);
  std::vector<uint16_t> ports;  // per listener; a configured 0 becomes the port worker 0 got
  for (const auto& l : cfg.listeners) {
    ports.push_back(l.address.port);
  }
  for (size_t i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, gen_, processor_.get(), access_log_.get(),
                                                *slots_, tls, open_connections_));
    if (cfg.admin.enabled) {  // nobody could read the spans without the admin listener
      workers_.back()->keepRecentSpans(cfg.admin.tracez_max_bytes / n);
      workers_.back()->mutableStats().keepExemplars(slots_->routeCapacity());
    }
    try {
      workers_.back()->bind(ports);
    } catch (const boost::system::system_error& e) {
      spdlog::error("cannot listen: {}", e.what());
      return 2;
    }
  }
  if (cfg.admin.enabled) {
    try {
      admin = std::make_unique<AdminServer>(
          io_, cfg.admin.address, [this](const filters::RequestHead& req, bool from_loopback) {
            return handleAdmin(req, from_loopback);
          });
    } catch (const boost::system::system_error& e) {
      spdlog::error("cannot listen on admin address {}: {}", cfg.admin.address.str(), e.what());
      return 2;
    }
    admin->start();
  }
  std::string bound;  // the --ports-file text
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const auto& l = cfg.listeners[i];
    const std::string address = config::HostPort{l.address.host, ports[i]}.str();
    spdlog::info("listener '{}' on {}{} ({} worker{})", l.name, address, l.tls ? " (TLS)" : "", n,
                 n == 1 ? "" : "s");
    bound += "listener " + address + " " + escapeLine(l.name) + "\n";
  }
  if (admin) {
    const std::string address = config::HostPort{cfg.admin.address.host, admin->port()}.str();
    spdlog::info("admin on {}", address);
    bound += "admin " + address + "\n";
  }
  if (!ports_file_.empty() && !writePortsFile(ports_file_, bound)) {
    return 2;
  }
  for (auto& w : workers_) {
    w->start();  // connections that arrived since bind wait in the backlog until now
  }
  return 0;
}

int Server::run() {
  const config::Config& cfg = *initial_;
  try {
    access_log_ = AccessLog::open(cfg.access_log);
  } catch (const std::exception& e) {
    spdlog::error("access_log.path: {}", e.what());
    return 1;
  }
  size_t routes = 0;
  for (const auto& l : cfg.listeners) {
    routes += l.routes.size() + 1;
  }
  slots_ = std::make_unique<StatsSlots>(routes + 256, cfg.clusters.size() + 64);
  try {
    gen_ = buildGeneration(initial_, *slots_);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  std::vector<TlsServerContext*> tls;
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    tls_.emplace_back();
    if (cfg.listeners[i].tls) {
      try {
        tls_.back() = std::make_unique<TlsServerContext>(
            *cfg.listeners[i].tls, "listeners[" + std::to_string(i) + "].tls");
      } catch (const std::exception& e) {
        spdlog::error("{}", e.what());
        return 2;
      }
    }
    tls.push_back(tls_.back().get());
  }
  processor_ = makeProcessor(cfg.tracing);

  std::unique_ptr<AdminServer> admin;
  if (int rc = bindAndStart(tls, admin); rc != 0) {
    return rc;
  }

  // SIGUSR1: reopen the access log file (logrotate's postrotate), as nginx does.
  asio::signal_set reopen_signal(io_, SIGUSR1);
  std::function<void()> arm_reopen = [&]() {
    reopen_signal.async_wait([&](boost::system::error_code ec, int) {
      if (ec) {
        return;
      }
      if (access_log_) {
        access_log_->reopen();
        spdlog::info("SIGUSR1: access log reopened");
      }
      arm_reopen();
    });
  };
  arm_reopen();
  // SIGHUP: re-read the config and apply it (as nginx -s reload); a bad one is refused.
  asio::signal_set reload_signal(io_, SIGHUP);
  std::function<void()> arm_reload = [&]() {
    reload_signal.async_wait([&](boost::system::error_code ec, int) {
      if (ec) {
        return;
      }
      reload("SIGHUP");
      arm_reload();
    });
  };
  arm_reload();
  asio::signal_set signals(io_, SIGTERM, SIGINT);
  asio::steady_timer drain_timer(io_);
  auto deadline = std::chrono::steady_clock::now();
  std::function<void()> poll = [&]() {
    int64_t active = 0;
    for (auto& w : workers_) {
      active += w->activeConnections();
    }
    if (active == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (active != 0) {
        spdlog::warn("drain timeout: closing {} connection(s)", active);
      }
      io_.stop();
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
    const auto drain_timeout = gen_->config->limits.drain_timeout;
    spdlog::info("signal {}: draining (up to {} ms)", sig, drain_timeout.count());
    draining_ = true;
    deadline = std::chrono::steady_clock::now() + drain_timeout;
    for (auto& w : workers_) {
      w->beginDrain();
    }
    poll();
  });
  io_.run();

  for (auto& w : workers_) {
    w->stop();
  }
  if (processor_) {
    processor_->shutdown(gen_->config->tracing.batch.export_timeout);
  }
  for (auto& r : retiring_) {
    r.thread.join();
  }
  const uint64_t started = spansStarted(workers_);
  workers_.clear();
  logPipelineAtExit(pipeline_stats_, started);
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int runServer(config::ConfigPtr cfg, ConfigLoader load, const std::string& ports_file) {
  ::signal(SIGPIPE, SIG_IGN);
  int rc = 0;
  {
    Server server(std::move(cfg), std::move(load), ports_file);
    rc = server.run();
  }  // the server's last generation goes to the reaper here
  finishRetiredGenerations();
  return rc;
}

}  // namespace sidetrace::proxy
