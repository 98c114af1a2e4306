// The downstream HTTP/2 connection (proxy/http2_server.cc) with nghttp2 in memory mode: the
// client's bytes after the preface arrive through an in-memory stream in reads of fuzzed sizes,
// into the same Http2Server the session runs, on a real Worker whose config answers every route
// with a direct response (small, 404, and one larger than the initial flow-control window), so
// each stream runs the full exchange and filter chain without a network. Input: one byte seeding
// the read sizes, then frames (HEADERS/CONTINUATION with HPACK, DATA, SETTINGS, PING, PRIORITY,
// RST_STREAM, WINDOW_UPDATE, GOAWAY, anything).
//
// The template is instantiated here for the in-memory stream (http2_server.cc is compiled into
// this target; the library instantiates it for TCP and TLS sockets): not a copy of the logic.
//
// Properties checked on the bytes the server writes: they are well-formed frames starting with
// SETTINGS; no response HEADERS on a stream id the client may not have opened (even, zero) and
// none on a stream above the last-stream-id of a GOAWAY already sent (no stream after GOAWAY);
// the connection ends once the client's bytes end (no hang), and the heap in use while one
// connection runs stays under a fixed bound whatever the client sends (bounded memory).

#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "config/load.h"
#include "proxy/generation.h"
// GCC flags the anonymous-namespace helper types of http2_server.cc once it is not the main file
// (clang has no such warning, and warns about the unknown group).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsubobject-linkage"
#endif
#include "proxy/http2_server.cc"  // NOLINT: the template's definitions, for MemoryStream
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#include "proxy/worker.h"
#include "tests/fuzz/fuzz_input.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIDETRACE_FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SIDETRACE_FUZZ_ASAN 1
#endif
#ifdef SIDETRACE_FUZZ_ASAN
// Declared here, not from <sanitizer/allocator_interface.h>: GCC does not ship that header, and the
// replay build runs under g++ -fsanitize=address in CI (libasan exports the function).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace asio = boost::asio;
using sidetrace::fuzz::check;

namespace {

size_t heapInUse() {
#ifdef SIDETRACE_FUZZ_ASAN
  return __sanitizer_get_current_allocated_bytes();
#else
  return 0;  // the replay build has no allocator statistics: the bound is checked by the fuzzer
#endif
}

// What may be allocated while one connection runs, beyond what was in use before: read buffer,
// nghttp2's state and queues, 100 streams each holding at most a window of request bytes and the
// response high-water mark. A client must not be able to grow it.
constexpr size_t kHeapBound = 64 * 1024 * 1024;

}  // namespace

namespace sidetrace::fuzz {

// An AsyncReadStream / AsyncWriteStream in memory: reads hand out the client's bytes in the given
// sizes, then end of stream; writes are collected. Completions are posted, as a socket's are, so
// the streams' coroutines interleave with the connection's loops as they do on a socket.
class MemoryStream {
 public:
  using executor_type = asio::any_io_executor;

  MemoryStream(executor_type ex, std::string_view input, uint8_t seed)
      : ex_(std::move(ex)), input_(input), sizes_(seed + 1) {}

  executor_type get_executor() { return ex_; }
  const std::string& written() const { return written_; }
  size_t peakHeap() const { return peak_; }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this, buffers](auto handler) {
          sample();
          const size_t n = asio::buffer_copy(
              buffers, asio::buffer(input_.data(), std::min(input_.size(), sizes_())));
          input_.remove_prefix(n);
          if (n > 0) {
            complete(std::move(handler), {}, n);
          } else {
            // Before the end of stream, let whatever is ready run (streams answering, the writer).
            endLater(std::move(handler), kSpinsBeforeEof);
          }
        },
        token);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this, buffers](auto handler) {
          sample();
          size_t n = 0;
          for (auto b = asio::buffer_sequence_begin(buffers);
               b != asio::buffer_sequence_end(buffers); ++b) {
            written_.append(static_cast<const char*>((*b).data()), (*b).size());
            n += (*b).size();
          }
          complete(std::move(handler), {}, n);
        },
        token);
  }

 private:
  static constexpr int kSpinsBeforeEof = 32;

  template <class Handler>
  void complete(Handler handler, boost::system::error_code ec, size_t n) {
    asio::post(ex_, [h = std::move(handler), ec, n]() mutable { std::move(h)(ec, n); });
  }
  template <class Handler>
  void endLater(Handler handler, int spins) {
    if (spins == 0) {
      complete(std::move(handler), asio::error::eof, 0);
      return;
    }
    asio::post(ex_, [this, h = std::move(handler), spins]() mutable {
      endLater(std::move(h), spins - 1);
    });
  }
  void sample() { peak_ = std::max(peak_, heapInUse()); }

  executor_type ex_;
  std::string_view input_;
  ReadSizes sizes_;
  std::string written_;
  size_t peak_ = 0;
};

}  // namespace sidetrace::fuzz

namespace {

sidetrace::proxy::Worker& worker() {
  static sidetrace::proxy::Worker* w = [] {
    const std::string big(200 * 1024, 'b');
    const std::string yaml = R"(
listeners:
  - name: h2
    address: 127.0.0.1:1
    routes:
      - name: small
        match: { prefix: /small }
        direct_response: { status: 200, body: "ok" }
      - name: big
        match: { prefix: /big }
        direct_response: { status: 200, body: ")" +
                             big + R"(" }
      - name: other
        match: { prefix: / }
        direct_response: { status: 404, body: "no route" }
tracing:
  service_name: fuzz
  sampler: { type: always_on }
  propagators: [ tracecontext, baggage, b3multi ]
  exporter: { protocol: none }
)";
    auto cfg = std::make_shared<sidetrace::config::Config>();
    sidetrace::config::applyYaml(*cfg, yaml, "http2_server_fuzz",
                                 [](const std::string&) { return std::optional<std::string>(); });
    sidetrace::config::validate(*cfg);
    static sidetrace::proxy::StatsSlots slots(16, 16);
    static std::atomic<int64_t> open_connections{0};
    auto gen = sidetrace::proxy::buildGeneration(std::move(cfg), slots);
    return new sidetrace::proxy::Worker(0, gen, nullptr, nullptr, slots, {}, open_connections);
  }();
  return *w;
}

uint32_t be(const std::string& s, size_t at, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  }
  return v;
}

void checkServerFrames(const std::string& out) {
  size_t pos = 0;
  bool first = true;
  int64_t goaway_last = INT64_MAX;
  while (pos < out.size()) {
    check(out.size() - pos >= 9, "a truncated frame header from the server");
    const uint32_t len = be(out, pos, 3);
    const auto type = static_cast<uint8_t>(out[pos + 3]);
    const auto flags = static_cast<uint8_t>(out[pos + 4]);
    const int32_t id = static_cast<int32_t>(be(out, pos + 5, 4) & 0x7fffffff);
    check(out.size() - pos - 9 >= len, "a truncated frame from the server");
    if (first) {
      check(type == NGHTTP2_SETTINGS && (flags & NGHTTP2_FLAG_ACK) == 0,
            "the server's first frame is not its SETTINGS");
      first = false;
    }
    if (type == NGHTTP2_GOAWAY) {
      check(len >= 8 && id == 0, "a malformed GOAWAY from the server");
      goaway_last = std::min<int64_t>(goaway_last, be(out, pos + 9, 4) & 0x7fffffff);
    }
    if (type == NGHTTP2_HEADERS) {
      check(id > 0 && (id & 1) == 1, "response HEADERS on a stream the client cannot have opened");
      check(id <= goaway_last, "a stream answered after a GOAWAY that excluded it");
    }
    pos += 9 + len;
  }
}

}  // namespace

template class sidetrace::proxy::Http2Server<sidetrace::fuzz::MemoryStream>;

namespace {

// Not in the extern "C" function itself: GCC 12 mangles a coroutine lambda there to a name that
// clashes with another lambda of the same function.
void serveOneConnection(const uint8_t* data, size_t size) {
  sidetrace::fuzz::FuzzInput in(data, size);
  const uint8_t seed = in.byte();
  const std::string_view frames = in.rest();

  auto& w = worker();
  asio::io_context& io = w.io();
  io.restart();
  const size_t before = heapInUse();
  asio::ip::tcp::socket tcp(io);  // never opened: the loops cancel it, which does nothing
  sidetrace::fuzz::MemoryStream stream(io.get_executor(), frames, seed);
  bool done = false;
  {
    sidetrace::proxy::DownstreamInfo info;
    info.peer_address = "127.0.0.1";
    info.peer_port = 40000;
    info.local_port = 1;
    auto server = std::make_unique<sidetrace::proxy::Http2Server<sidetrace::fuzz::MemoryStream>>(
        w, stream, tcp, std::move(info));
    asio::co_spawn(
        io,
        [&server, &done]() -> asio::awaitable<void> {
          co_await server->run(sidetrace::proxy::kHttp2Preface);
          done = true;
        },
        asio::detached);
    // Only ready handlers may run until the connection is over: a timer the connection still
    // waits for once the client's bytes ended would be a connection that does not end.
    while (!done) {
      const size_t ran = io.poll();
      check(ran > 0 || done, "the connection waits for a timer after the client's bytes ended");
    }
    io.poll();  // cancelled timers complete and drop their references
  }
  io.poll();
  checkServerFrames(stream.written());
  check(stream.peakHeap() < before + kHeapBound || before == 0, "heap use over its bound");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  serveOneConnection(data, size);
  return 0;
}
