#include "tracing/tracer.h"

#include <gtest/gtest.h>

#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "tests/unit/tracing/map_carrier.h"
#include "tracing/otlp_encode.h"

namespace sidetrace::tracing {
namespace {

// Decodes each request the way a collector would and keeps the spans.
class RecordingExporter : public SpanExporter {
 public:
  ExportResult exportSpans(std::string_view request, size_t span_count) override {
    std::vector<SpanData> spans;
    bool ok = decodeOtlpRequest(request, &spans);
    std::lock_guard lock(mu);
    if (!ok || spans.size() != span_count) {
      ++bad_requests;
      return ExportResult::Failure;
    }
    for (auto& s : spans) {
      got.push_back(std::move(s));
    }
    return ExportResult::Success;
  }
  std::mutex mu;
  std::vector<SpanData> got;
  int bad_requests = 0;  // undecodable, or span_count not what the request holds
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
    EXPECT_EQ(exporter->bad_requests, 0);
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

// A clock reading the caller already took serves as a span's start or end; 0 reads the clock.
TEST_F(TracerTest, GivenTimesAreUsedAndZeroReadsTheClock) {
  Tracer t = makeTracer("always_on");
  Span server = t.startServerSpan("GET r", nullptr, nullptr, 500);
  Span client = t.startChildSpan("GET r", SpanKind::Client, server, 700);
  Span other = t.startChildSpan("GET r", SpanKind::Client, server);  // clock: 1000
  other.end();                                                       // clock: 2000
  client.end(900);
  server.end(950);
  EXPECT_EQ(clock, 2000u) << "given times read no clock";
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 3u);
  EXPECT_EQ(spans[0].start_unix_nanos, 1000u);
  EXPECT_EQ(spans[0].end_unix_nanos, 2000u);
  EXPECT_EQ(spans[1].start_unix_nanos, 700u);
  EXPECT_EQ(spans[1].end_unix_nanos, 900u);
  EXPECT_EQ(spans[2].start_unix_nanos, 500u);
  EXPECT_EQ(spans[2].end_unix_nanos, 950u);
  EXPECT_EQ(spans[1].name, "GET r");
  EXPECT_EQ(spans[1].parent_span_id, spans[2].span_id);
}

// A recycled record starts clean: no name, tracestate, status or attributes of the span before.
TEST_F(TracerTest, RecycledRecordCarriesNothingOver) {
  Tracer t = makeTracer("parentbased_always_on");
  auto parent = remote(kFlagSampled, "vendor=1");
  Span first = t.startServerSpan("first", &parent);
  first.setAttribute("a", int64_t{1});
  first.setStatus(StatusCode::Error, "bad");
  first.end();
  Span second = t.startServerSpan("second", nullptr);
  EXPECT_EQ(second.name(), "second");
  second.end();
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].tracestate, "vendor=1");
  EXPECT_EQ(spans[1].name, "second");
  EXPECT_EQ(spans[1].tracestate, "");
  EXPECT_EQ(spans[1].status, StatusCode::Unset);
  EXPECT_EQ(spans[1].status_message, "");
  EXPECT_TRUE(spans[1].attributes.empty());
  EXPECT_EQ(Span().name(), "");
}

TEST_F(TracerTest, RootServerSpanGetsNewTrace) {
  Tracer t = makeTracer("always_on");
  Span s = t.startServerSpan("GET /a", nullptr);
  EXPECT_TRUE(s.recording());
  EXPECT_TRUE(s.context().valid());
  EXPECT_EQ(s.context().flags, 1);
  EXPECT_FALSE(s.context().remote);
  s.setAttribute("http.request.method", "GET");
  s.setAttribute("http.response.status_code", int64_t{503});
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
  EXPECT_EQ(d.attributes[0].key, "http.request.method");
  EXPECT_EQ(std::get<std::string>(d.attributes[0].value), "GET");
  EXPECT_EQ(d.attributes[1].key, "http.response.status_code");
  EXPECT_EQ(std::get<int64_t>(d.attributes[1].value), 503);
  EXPECT_EQ(d.status, StatusCode::Error);
  EXPECT_EQ(d.status_message, "boom");
  EXPECT_EQ(buffer->started(), 1u);
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
  s.setAttribute("k", "v");
  s.setStatus(StatusCode::Error, "e");
  s.setName("renamed");
  Span child = t.startChildSpan("c", SpanKind::Client, s);
  EXPECT_FALSE(child.recording());
  EXPECT_TRUE(child.context().valid());
  EXPECT_EQ(child.context().flags, 0);
  child.end();
  s.end();
  EXPECT_TRUE(flushAll().empty());
  EXPECT_EQ(buffer->started(), 2u);
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

// The contract: setAttribute appends, in call order; it never looks for an earlier value of the
// key (the caller sets each key once). A repeated key is exported twice, as set.
TEST_F(TracerTest, SetAttributeAppendsInCallOrder) {
  Tracer t = makeTracer("always_on");
  Span s = t.startServerSpan("a", nullptr);
  s.setAttribute("k", int64_t{1});
  s.setAttribute("other", "x");
  s.setAttribute("k", int64_t{2});
  s.end();
  s.setAttribute("after-end", "ignored");
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 1u);
  const auto& attrs = spans[0].attributes;
  ASSERT_EQ(attrs.size(), 3u);
  EXPECT_EQ(attrs[0].key, "k");
  EXPECT_EQ(std::get<int64_t>(attrs[0].value), 1);
  EXPECT_EQ(attrs[1].key, "other");
  EXPECT_EQ(std::get<std::string>(attrs[1].value), "x");
  EXPECT_EQ(attrs[2].key, "k");
  EXPECT_EQ(std::get<int64_t>(attrs[2].value), 2);
  // SpanData::attribute finds the first one.
  const AttributeValue* k = spans[0].attribute("k");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(std::get<int64_t>(*k), 1);
  EXPECT_EQ(spans[0].attribute("after-end"), nullptr);
  EXPECT_EQ(spans[0].attribute("missing"), nullptr);
}

TEST_F(TracerTest, AttributeValuesOfEveryKind) {
  Tracer t = makeTracer("always_on");
  Span s = t.startServerSpan(std::string("temp-") + "name", nullptr);  // name is copied
  s.setAttribute("str", std::string("from a temporary"));
  s.setAttribute("lit", "literal");  // a string, not a bool
  s.setAttribute("neg", int64_t{-42});
  s.setAttribute("dbl", 0.25);
  s.setAttribute("f", false);
  s.setAttribute("t", true);
  s.end();
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 1u);
  const SpanData& d = spans[0];
  EXPECT_EQ(d.name, "temp-name");
  ASSERT_EQ(d.attributes.size(), 6u);
  EXPECT_EQ(std::get<std::string>(*d.attribute("str")), "from a temporary");
  EXPECT_EQ(std::get<std::string>(*d.attribute("lit")), "literal");
  EXPECT_EQ(std::get<int64_t>(*d.attribute("neg")), -42);
  EXPECT_EQ(std::get<double>(*d.attribute("dbl")), 0.25);
  EXPECT_EQ(std::get<bool>(*d.attribute("f")), false);
  EXPECT_EQ(std::get<bool>(*d.attribute("t")), true);
}

// Records are pooled per tracer: a span must not inherit anything from the one before it.
TEST_F(TracerTest, ReusedRecordsStartClean) {
  Tracer t = makeTracer("parentbased_always_on");
  SpanContext parent = remote(1, "rojo=1");
  {
    Span a = t.startServerSpan("a", &parent);
    a.setAttribute("k", "v");
    a.setStatus(StatusCode::Error, "bad");
    Span c = t.startChildSpan("c", SpanKind::Client, a);
    c.setAttribute("ck", int64_t{1});
    c.setStatus(StatusCode::Ok);
  }
  {
    Span b = t.startServerSpan("b", nullptr);
    Span c2 = t.startChildSpan("c2", SpanKind::Internal, b);
  }
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 4u);
  // Ended in reverse order of start: c, a, c2, b.
  EXPECT_EQ(spans[0].name, "c");
  EXPECT_EQ(spans[0].status, StatusCode::Ok);
  ASSERT_EQ(spans[0].attributes.size(), 1u);
  EXPECT_EQ(spans[1].name, "a");
  EXPECT_EQ(spans[1].status, StatusCode::Error);
  EXPECT_EQ(spans[1].status_message, "bad");
  EXPECT_EQ(spans[1].tracestate, "rojo=1");
  ASSERT_EQ(spans[1].attributes.size(), 1u);
  for (const SpanData* d : {&spans[2], &spans[3]}) {
    SCOPED_TRACE(d->name);
    EXPECT_TRUE(d->attributes.empty());
    EXPECT_EQ(d->status, StatusCode::Unset);
    EXPECT_EQ(d->status_message, "");
    EXPECT_EQ(d->tracestate, "");
    EXPECT_NE(d->trace_id, parent.trace_id);
  }
  EXPECT_EQ(spans[2].name, "c2");
  EXPECT_EQ(spans[2].kind, SpanKind::Internal);
  EXPECT_EQ(spans[2].parent_span_id, spans[3].span_id);
  EXPECT_EQ(spans[3].name, "b");
  EXPECT_EQ(spans[3].kind, SpanKind::Server);
  EXPECT_FALSE(spans[3].parent_span_id.valid());
}

// OpenTelemetry span limits: long strings cut at a character boundary, attributes past the count
// dropped and counted; a reused record starts with a fresh count.
TEST_F(TracerTest, SpanLimitsCutValuesAndDropAttributesPastTheCount) {
  Tracer t = makeTracer("always_on");
  config::SpanLimits limits;
  limits.attribute_value_length = 5;
  limits.attribute_count = 3;
  t.setSpanLimits(limits);
  {
    Span s = t.startServerSpan("a", nullptr);
    s.setAttribute("ascii", "abcdefgh");
    s.setAttribute("euro", "abcd\xe2\x82\xac");  // the 3-byte euro sign would straddle the limit
    s.setAttribute("n", int64_t{123456789});     // numbers are not cut
    s.setAttribute("fourth", "x");
    s.setAttribute("fifth", true);
  }
  { Span b = t.startServerSpan("b", nullptr); }
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 2u);
  const SpanData& a = spans[0];
  ASSERT_EQ(a.attributes.size(), 3u);
  EXPECT_EQ(std::get<std::string>(*a.attribute("ascii")), "abcde");
  EXPECT_EQ(std::get<std::string>(*a.attribute("euro")), "abcd");
  EXPECT_EQ(std::get<int64_t>(*a.attribute("n")), 123456789);
  EXPECT_EQ(a.attribute("fourth"), nullptr);
  EXPECT_EQ(a.dropped_attributes_count, 2u);
  EXPECT_EQ(spans[1].dropped_attributes_count, 0u);
}

// An AttributeBlock appended with addAttributes gives a span exactly what setting the same
// attributes one by one gives (keys, values, order, dropped count), under every span limit:
// where the limits would drop or cut one of them, or a value is not ASCII, addAttributes declines
// and the caller sets them one by one.
TEST_F(TracerTest, AttributeBlockSameAsSettingOneByOne) {
  const std::string long_value(300, 'v');
  const std::vector<std::function<void(AttributeBlock&, Span&)>> blocks = {
      [](AttributeBlock& b, Span& s) {  // a SERVER span's peer attributes
        auto put = [](auto& o) {
          o.setAttribute("server.port", int64_t{8080});
          o.setAttribute("client.address", "10.1.2.3");
          o.setAttribute("network.peer.address", "10.1.2.3");
          o.setAttribute("network.peer.port", int64_t{54321});
        };
        put(b);
        put(s);
      },
      [&long_value](AttributeBlock& b, Span& s) {  // long values, other types
        auto put = [&long_value](auto& o) {
          o.setAttribute("http.route", std::string_view(long_value));
          o.setAttribute("k", true);
          o.setAttribute("d", 1.5);
          o.setAttribute("neg", int64_t{-7});
        };
        put(b);
        put(s);
      },
      [](AttributeBlock& b, Span& s) {  // not ASCII: the block is never used
        auto put = [](auto& o) {
          o.setAttribute("a", "x");
          o.setAttribute("b", "caf\xc3\xa9 \xff");
        };
        put(b);
        put(s);
      }};
  std::vector<config::SpanLimits> limits(6);
  limits[1].attribute_count = 3;  // the block crosses the count
  limits[2].attribute_count = 6;  // it just fits after the two set before
  limits[3].attribute_count = 1;  // only what was set before, partly
  limits[4].attribute_value_length = 5;
  limits[5].attribute_value_length = 300;
  for (size_t l = 0; l < limits.size(); ++l) {
    for (size_t i = 0; i < blocks.size(); ++i) {
      Tracer t = makeTracer("always_on");
      t.setSpanLimits(limits[l]);
      {
        AttributeBlock block;
        Span one_by_one = t.startServerSpan("one", nullptr);
        Span with_block = t.startServerSpan("block", nullptr);
        for (Span* s : {&one_by_one, &with_block}) {
          s->setAttribute("before", "1");
          s->setAttribute("before.long", "123456");
        }
        blocks[i](block, one_by_one);
        if (!with_block.addAttributes(block)) {
          AttributeBlock unused;
          blocks[i](unused, with_block);
        }
        const bool fits = limits[l].attribute_count >= 2 + block.count() &&
                          limits[l].attribute_value_length >= block.longestText();
        EXPECT_EQ(block.usable() && fits, i != 2 && fits);
        for (Span* s : {&one_by_one, &with_block}) {
          s->setAttribute("after", int64_t{1});
        }
      }
      auto spans = flushAll();
      ASSERT_GE(spans.size(), 2u);
      const SpanData& a = spans[spans.size() - 2];
      const SpanData& b = spans[spans.size() - 1];
      ASSERT_EQ(a.attributes.size(), b.attributes.size()) << "limits " << l << " block " << i;
      for (size_t k = 0; k < a.attributes.size(); ++k) {
        EXPECT_EQ(a.attributes[k].key, b.attributes[k].key) << "limits " << l << " block " << i;
        EXPECT_EQ(a.attributes[k].value, b.attributes[k].value) << a.attributes[k].key;
      }
      EXPECT_EQ(a.dropped_attributes_count, b.dropped_attributes_count) << "limits " << l;
    }
  }
}

// Not recording: nothing to add, and nothing for the caller to do either.
TEST_F(TracerTest, AttributeBlockOnANonRecordingSpan) {
  Tracer t = makeTracer("always_off");
  AttributeBlock block;
  block.setAttribute("a", "b");
  Span s = t.startServerSpan("a", nullptr);
  EXPECT_TRUE(s.addAttributes(block));
  EXPECT_EQ(block.count(), 1u);
  block.clear();
  EXPECT_EQ(block.count(), 0u);
  EXPECT_TRUE(block.bytes().empty());
}

TEST_F(TracerTest, DefaultSpanLimitCutsValuesAt4096Bytes) {
  Tracer t = makeTracer("always_on");
  {
    Span s = t.startServerSpan("a", nullptr);
    s.setAttribute("user_agent.original", std::string_view(std::string(60000, 'u')));
  }
  auto spans = flushAll();
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(std::get<std::string>(*spans[0].attribute("user_agent.original")).size(), 4096u);
}

// W3C level 2: the random flag describes the trace id, so it stays with a continued trace.
TEST_F(TracerTest, RandomFlagKeptWithTheTraceId) {
  Tracer t = makeTracer("parentbased_always_on");
  SpanContext sampled_random = remote(kFlagSampled | kFlagRandom);
  Span s = t.startServerSpan("a", &sampled_random);
  Span c = t.startChildSpan("c", SpanKind::Client, s);
  EXPECT_EQ(s.context().flags, 0x03);
  EXPECT_EQ(c.context().flags, 0x03);
  EXPECT_EQ(formatTraceparent(c.context()).substr(53), "03");
  SpanContext unsampled_random = remote(kFlagRandom);
  EXPECT_EQ(t.startServerSpan("b", &unsampled_random).context().flags, 0x02);
  EXPECT_EQ(t.startServerSpan("root", nullptr).context().flags, 0x01);
}

// B3 debug implies sampled and passes to the next hop; never with an unsampled span.
TEST_F(TracerTest, B3DebugPassesOnWithASampledSpan) {
  Tracer t = makeTracer("parentbased_always_on");
  SpanContext debug = remote(kFlagSampled);
  debug.debug = true;
  Span s = t.startServerSpan("a", &debug);
  Span c = t.startChildSpan("c", SpanKind::Client, s);
  EXPECT_TRUE(s.context().debug);
  EXPECT_TRUE(c.context().debug);
  MapCarrier carrier;
  CompositePropagator({"b3multi"}).inject(c.context(), carrier);
  EXPECT_EQ(carrier.headers.at("x-b3-flags"), "1");
  EXPECT_EQ(carrier.headers.count("x-b3-sampled"), 0u);

  Tracer off = makeTracer("always_off");
  EXPECT_FALSE(off.startServerSpan("b", &debug).context().debug);
}

// Exporter "none": the buffer has no processor, so nothing is recorded, but a sampled context
// still propagates.
TEST(TracerNoExporterTest, SampledButNotRecording) {
  WorkerSpanBuffer none(nullptr);
  Tracer t(
      makeSampler("always_on", 1.0), &none, [] { return uint64_t{1}; }, 3);
  Span s = t.startServerSpan("x", nullptr);
  EXPECT_FALSE(s.recording());
  EXPECT_TRUE(s.context().valid());
  EXPECT_EQ(s.context().flags, kFlagSampled);
  s.setAttribute("k", "v");
  Span c = t.startChildSpan("c", SpanKind::Client, s);
  EXPECT_FALSE(c.recording());
  EXPECT_TRUE(c.context().valid());
  EXPECT_EQ(c.context().trace_id, s.context().trace_id);
  EXPECT_EQ(c.context().flags, kFlagSampled);
  c.end();
  s.end();

  Tracer no_buffer(
      makeSampler("always_on", 1.0), nullptr, [] { return uint64_t{1}; }, 3);
  Span n = no_buffer.startServerSpan("x", nullptr);
  EXPECT_FALSE(n.recording());
  EXPECT_TRUE(n.context().valid());
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
