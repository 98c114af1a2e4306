// HTTP/1 responses as an upstream call parses them (proxy/http1_upstream_call.cc): a fresh parser
// per call, told whether the request was HEAD, interim 1xx heads skipped, then one final response
// framed by Content-Length, chunked (with trailers) or the connection's end. Input: one flag byte
// (bit 0: the request was HEAD), one byte seeding the read sizes, then the upstream's bytes.
//
// Properties: the same bytes split at any points parse to the same responses; no CR/LF/NUL in
// fields or the reason; no body after HEAD or in 204/304; a complete final response serialized
// again as the proxy sends it downstream (appendResponseHead, its body re-framed) parses the same.

#include <cstdint>
#include <string>

#include "tests/fuzz/http1_driver.h"

using sidetrace::fuzz::check;
using sidetrace::fuzz::Http1Driver;
using sidetrace::fuzz::Http1Message;
using sidetrace::proxy::Http1Parser;

namespace {

constexpr uint32_t kMaxHead = 1024 * 1024;  // what the upstream call allows
constexpr size_t kBuffer = 64 * 1024;

std::string run(std::string_view wire, bool head, uint64_t seed, bool split,
                std::vector<Http1Message>* out = nullptr) {
  Http1Driver d(Http1Parser::Kind::Response, split ? kBuffer : std::max(kBuffer, wire.size()),
                kMaxHead);
  d.parser().setNoBody(head);
  d.stopAfterFinalResponse();
  if (split) {
    d.receive(wire, sidetrace::fuzz::ReadSizes(seed));
  } else {
    d.receive(wire, [] { return SIZE_MAX; });
  }
  d.eof();
  if (out != nullptr) {
    *out = d.messages();
  }
  return sidetrace::fuzz::summarize(d.messages());
}

void checkForwardedCopy(const Http1Message& m, bool head, bool until_eof) {
  std::string wire;
  sidetrace::proxy::appendResponseHead(wire, m.response);
  wire += "\r\n";
  sidetrace::fuzz::appendForwardedBody(wire, m);
  Http1Driver again(Http1Parser::Kind::Response, wire.size() + 1, kMaxHead);
  again.parser().setNoBody(head);
  again.stopAfterFinalResponse();
  again.receive(wire, [] { return SIZE_MAX; });
  if (until_eof) {
    again.eof();
  }
  check(again.messages().size() == 1 && again.messages()[0].complete,
        "a forwarded response does not parse as one complete response", wire,
        sidetrace::fuzz::summarize(again.messages()));
  Http1Message back = again.messages()[0];
  Http1Message expected = m;
  expected.trailers = sidetrace::fuzz::forwardedTrailers(m.trailers);
  check(back.response.status == expected.response.status &&
            back.response.headers.size() == expected.response.headers.size() &&
            back.body == expected.body &&
            sidetrace::fuzz::sameFields(back.trailers, expected.trailers),
        "a forwarded response parses differently", expected.summary(), back.summary());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sidetrace::fuzz::FuzzInput in(data, size);
  const bool head = in.flag();
  const uint8_t seed = in.byte();
  const std::string_view wire = in.rest();

  std::vector<Http1Message> messages;
  const std::string a = run(wire, head, 0, false, &messages);
  const std::string b = run(wire, head, seed + 1, true);
  check(a == b, "read sizes change what the responses are", a, b);

  for (const auto& m : messages) {
    const int status = m.response.status;
    if (head || status == 204 || status == 304 || (status >= 100 && status < 200)) {
      check(m.body.empty(), "a body where none may be", m.summary());
    }
    if (m.complete && !m.upgrade && status >= 200) {
      checkForwardedCopy(m, head, m.until_eof);
    }
  }
  return 0;
}
