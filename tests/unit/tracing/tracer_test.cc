#include "tracing/tracer.h"

#include <gtest/gtest.h>

#include "tests/unit/tracing/map_carrier.h"

namespace sidetrace::tracing {
namespace {

class RecordingExporter : public SpanExporter {
 public:
  ExportResult exportSpans(const std::vector<SpanData>& spans, const Resource&) override {
    std::lock_guard lock(mu);
    for (const auto& s : spans) {
      got.push_back(s);
    }
    return ExportResult::Success;
  }
  std::mutex mu;
  std::vector<SpanData> got;
};

struct Fixture : ::testing::Test {
  Fixture() {
    auto e = std::make_unique<RecordingExporter>();
    exporter = e.get();
    config::BatchConfig cfg;
    cfg.schedule_delay = config::Duration{60000};
    processor = std::make_unique<BatchSpanProcessor>(std::move(e), cfg, Resource{});
    buffer = std::make_unique<WorkerSpanBuffer>(processor.get(), 1000);
  }
  std::vector<SpanData> flushAll() {
    buffer->flush();
    EXPECT_TRUE(processor->forceFlush(std::chrono::seconds(5)));
    std::lock_guard lock(exporter->mu);
    return exporter->got;
  }
  Tracer makeTracer(const char* sampler) {
    return Tracer(
        makeSampler(sampler, 1.0), buffer.get(), [this] { return clock += 1000; }, 1);
  }

  RecordingExporter* exporter;
  std::unique_ptr<BatchSpanProcessor> processor;
  std::unique_ptr<WorkerSpanBuffer> buffer;
  uint64_t clock = 0;
};

using TracerTest = Fixture;

SpanContext remote(uint8_t flags, std::string tracestate = {}) {
  auto ctx = *parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ctx.flags = flags;
  ctx.tracestate = std::move(tracestate);
  return ctx;
}

TEST_F(TracerTest, RootServerSpanGetsNewTrace) {
  Tracer t = makeTracer("always_on");
  Span s = t.startServerSpan("GET /a", nullptr);
  EXPECT_TRUE(s.recording());
  EXPECT_TRUE(s.context().valid());
  EXPECT_EQ(s.context().flags, 1);
  EXPECT_FALSE(s.context().remote);
  s.setAttribute("http.request.method", std::string("GET"));
  s.setAttribute("http.response.status_code", int64_t{200});
  s.setAttribute("http.response.status_code", int64_t{503});  // replaces
  s.setStatus(StatusCode::Error, "boom");
  s.end();
  EXPECT_FALSE(s.recording());
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 1u);
  const SpanData& d = spans[0];
  EXPECT_EQ(d.name, "GET /a");
  EXPECT_EQ(d.kind, SpanKind::Server);
  EXPECT_EQ(d.trace_id, s.context().trace_id);
  EXPECT_EQ(d.span_id, s.context().span_id);
  EXPECT_FALSE(d.parent_span_id.valid());
  EXPECT_EQ(d.start_unix_nanos, 1000u);
  EXPECT_EQ(d.end_unix_nanos, 2000u);
  EXPECT_EQ(d.flags, 1);
  ASSERT_EQ(d.attributes.size(), 2u);
  EXPECT_EQ(std::get<int64_t>(d.attributes[1].value), 503);
  EXPECT_EQ(d.status, StatusCode::Error);
  EXPECT_EQ(d.status_message, "boom");
  EXPECT_EQ(processor->stats().spans_started.load(), 1u);
  EXPECT_EQ(processor->stats().spans_sampled.load(), 1u);
}

TEST_F(TracerTest, ServerSpanContinuesRemoteParent) {
  Tracer t = makeTracer("parentbased_always_on");
  SpanContext parent = remote(1, "rojo=1");
  Span s = t.startServerSpan("GET x", &parent);
  EXPECT_EQ(s.context().trace_id, parent.trace_id);
  EXPECT_NE(s.context().span_id, parent.span_id);
  EXPECT_EQ(s.context().tracestate, "rojo=1");
  s.end();
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].parent_span_id, parent.span_id);
  EXPECT_EQ(spans[0].tracestate, "rojo=1");
}

TEST_F(TracerTest, UnsampledSpanHasIdsButRecordsNothing) {
  Tracer t = makeTracer("parentbased_always_on");
  SpanContext parent = remote(0);
  Span s = t.startServerSpan("GET x", &parent);
  EXPECT_FALSE(s.recording());
  EXPECT_TRUE(s.context().valid());
  EXPECT_EQ(s.context().trace_id, parent.trace_id);
  EXPECT_EQ(s.context().flags, 0);
  EXPECT_EQ(formatTraceparent(s.context()).substr(53), "00");
  s.setAttribute("k", std::string("v"));
  Span child = t.startChildSpan("c", SpanKind::Client, s);
  EXPECT_FALSE(child.recording());
  EXPECT_TRUE(child.context().valid());
  EXPECT_EQ(child.context().flags, 0);
  child.end();
  s.end();
  EXPECT_TRUE(flushAll().empty());
  EXPECT_EQ(processor->stats().spans_started.load(), 2u);
  EXPECT_EQ(processor->stats().spans_sampled.load(), 0u);
}

TEST_F(TracerTest, InvalidRemoteParentStartsNewTrace) {
  Tracer t = makeTracer("parentbased_always_off");
  SpanContext invalid;
  Span s = t.startServerSpan("x", &invalid);
  EXPECT_TRUE(s.context().trace_id.valid());
  EXPECT_FALSE(s.recording());  // root → always_off delegate
}

TEST_F(TracerTest, ChildInheritsTraceFlagsAndTracestate) {
  Tracer t = makeTracer("always_on");
  SpanContext parent = remote(1, "congo=2");
  {
    Span server = t.startServerSpan("GET r", &parent);
    Span client = t.startChildSpan("GET r", SpanKind::Client, server);
    EXPECT_TRUE(client.recording());
    EXPECT_EQ(client.context().trace_id, server.context().trace_id);
    EXPECT_NE(client.context().span_id, server.context().span_id);
    EXPECT_EQ(client.context().flags, 1);
    EXPECT_EQ(client.context().tracestate, "congo=2");
    // What goes upstream names the CLIENT span as parent.
    MapCarrier c;
    CompositePropagator({"tracecontext"}).inject(client.context(), c);
    EXPECT_EQ(c.headers.at("traceparent"),
              "00-4bf92f3577b34da6a3ce929d0e0e4736-" + client.context().span_id.hex() + "-01");
    EXPECT_EQ(c.headers.at("tracestate"), "congo=2");
  }  // destructors end both spans
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 2u);
  const SpanData& client = spans[0].kind == SpanKind::Client ? spans[0] : spans[1];
  const SpanData& server = spans[0].kind == SpanKind::Server ? spans[0] : spans[1];
  EXPECT_EQ(client.parent_span_id, server.span_id);
  EXPECT_EQ(server.parent_span_id, parent.span_id);
}

TEST_F(TracerTest, ChildOfEmptySpanIsEmpty) {
  Tracer t = makeTracer("always_on");
  Span empty;
  Span child = t.startChildSpan("x", SpanKind::Client, empty);
  EXPECT_FALSE(child.recording());
  EXPECT_FALSE(child.context().valid());
}

TEST_F(TracerTest, StatusRules) {
  Tracer t = makeTracer("always_on");
  Span a = t.startServerSpan("a", nullptr);
  a.setStatus(StatusCode::Error, "e");
  a.setStatus(StatusCode::Unset);
  a.end();
  Span b = t.startServerSpan("b", nullptr);
  b.setStatus(StatusCode::Ok, "ignored");
  b.setStatus(StatusCode::Error, "late");
  b.end();
  Span c = t.startServerSpan("c", nullptr);
  c.setStatus(StatusCode::Error, "e");
  c.setStatus(StatusCode::Ok);
  c.setName("c2");
  c.end();
  c.setName("after-end");
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 3u);
  EXPECT_EQ(spans[0].status, StatusCode::Error);
  EXPECT_EQ(spans[0].status_message, "e");
  EXPECT_EQ(spans[1].status, StatusCode::Ok);
  EXPECT_EQ(spans[1].status_message, "");
  EXPECT_EQ(spans[2].status, StatusCode::Ok);
  EXPECT_EQ(spans[2].name, "c2");
}

TEST_F(TracerTest, MoveKeepsOneSpanAndAssignmentEndsTheOld) {
  Tracer t = makeTracer("always_on");
  Span a = t.startServerSpan("a", nullptr);
  Span moved = std::move(a);
  EXPECT_TRUE(moved.recording());
  a.end();                                  // moved-from: no effect
  moved = t.startServerSpan("b", nullptr);  // ends "a"
  moved.end();
  moved.end();
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].name, "a");
  EXPECT_EQ(spans[1].name, "b");
}

TEST(ResourceTest, DefaultsThenConfigOverrides) {
  config::TracingConfig cfg;
  cfg.service_name = "orders";
  cfg.resource = {{"deployment.environment", "prod"}, {"telemetry.sdk.name", "custom"}};
  Resource r = makeResource(cfg);
  auto get = [&](const std::string& k) -> std::string {
    for (const auto& a : r.attributes) {
      if (a.key == k) {
        return std::get<std::string>(a.value);
      }
    }
    return "<missing>";
  };
  EXPECT_EQ(get("service.name"), "orders");
  EXPECT_NE(get("host.name"), "<missing>");
  EXPECT_EQ(get("telemetry.sdk.name"), "custom");
  EXPECT_EQ(get("telemetry.sdk.language"), "cpp");
  EXPECT_EQ(get("telemetry.sdk.version"), SIDETRACE_VERSION);
  EXPECT_EQ(get("deployment.environment"), "prod");
  EXPECT_EQ(r.attributes.size(), 6u);
}

TEST(ClockTest, SystemClockIsUnixNanos) {
  uint64_t now = systemClockNanos();
  EXPECT_GT(now, 1'600'000'000'000'000'000ULL);
  EXPECT_LT(now, 4'000'000'000'000'000'000ULL);
}

}  // namespace
}  // namespace sidetrace::tracing
