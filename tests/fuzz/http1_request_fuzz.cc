// HTTP/1 requests as the downstream session parses them (proxy/http1_codec.h through the
// session's FlatBuffer loop): heads, Content-Length and chunked bodies, trailers, pipelined
// requests in one buffer. Input: one byte seeding the read sizes, then the bytes a client sends.
//
// Properties, beyond "no crash": (1) the same bytes read in one piece or split at arbitrary points
// parse to the same requests (same heads, bodies, trailers, errors); (2) field names and values
// hold no CR/LF/NUL and no request is both chunked and Content-Length framed (what the proxy
// forwards cannot smuggle); (3) a complete request, serialized again the way the proxy forwards
// it (appendRequestHead, its body re-framed, appendLastChunk), parses to the same request.

#include <cstdint>
#include <string>

#include "config/config.h"
#include "tests/fuzz/http1_driver.h"

using sidetrace::fuzz::check;
using sidetrace::fuzz::Http1Driver;
using sidetrace::fuzz::Http1Message;
using sidetrace::proxy::Http1Parser;

namespace {

void checkForwardedCopy(const Http1Message& m, const sidetrace::config::Limits& limits) {
  std::string wire;
  sidetrace::proxy::appendRequestHead(wire, m.request);
  wire += "\r\n";
  sidetrace::fuzz::appendForwardedBody(wire, m);
  Http1Driver again(Http1Parser::Kind::Request, wire.size() + 1,
                    limits.max_request_headers_bytes * 2);
  again.receive(wire, [] { return SIZE_MAX; });
  check(again.messages().size() == 1 && again.messages()[0].complete,
        "a forwarded request does not parse as one complete request", wire,
        sidetrace::fuzz::summarize(again.messages()));
  const Http1Message& back = again.messages()[0];
  Http1Message expected = m;
  expected.trailers = sidetrace::fuzz::forwardedTrailers(m.trailers);
  check(back.head == expected.head && back.body == expected.body &&
            sidetrace::fuzz::sameFields(back.trailers, expected.trailers),
        "a forwarded request parses differently", expected.summary(), back.summary());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sidetrace::fuzz::FuzzInput in(data, size);
  const uint8_t seed = in.byte();
  const std::string_view wire = in.rest();
  const sidetrace::config::Limits limits;  // the defaults the session runs with

  Http1Driver whole(Http1Parser::Kind::Request, std::max<size_t>(limits.buffer_bytes, wire.size()),
                    limits.max_request_headers_bytes, limits.max_request_headers_count);
  whole.receive(wire, [] { return SIZE_MAX; });
  Http1Driver split(Http1Parser::Kind::Request, limits.buffer_bytes,
                    limits.max_request_headers_bytes, limits.max_request_headers_count);
  split.receive(wire, sidetrace::fuzz::ReadSizes(seed + 1));
  const std::string a = sidetrace::fuzz::summarize(whole.messages());
  const std::string b = sidetrace::fuzz::summarize(split.messages());
  check(a == b, "read sizes change what the requests are", a, b);

  for (const auto& m : whole.messages()) {
    if (m.complete && !m.upgrade && m.request.version_minor == 1) {
      checkForwardedCopy(m, limits);
    }
  }
  return 0;
}
