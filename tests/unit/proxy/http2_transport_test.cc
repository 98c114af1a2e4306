#include "proxy/http2_transport.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace sidetrace::proxy {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;

Pairs dump(NvList& l) {
  Pairs out;
  const nghttp2_nv* nv = l.data();
  for (size_t i = 0; i < l.size(); ++i) {
    out.emplace_back(std::string(reinterpret_cast<const char*>(nv[i].name), nv[i].namelen),
                     std::string(reinterpret_cast<const char*>(nv[i].value), nv[i].valuelen));
  }
  return out;
}

// A trailing HEADERS frame carries what an HTTP/1 trailer section may (filters::allowedInTrailers),
// whichever protocol the trailers came from: content-length or authorization from an HTTP/2 peer's
// trailers never reach the other side.
TEST(NvListTest, TrailersLeaveOutWhatNoTrailerSectionMayCarry) {
  filters::HeaderMap t;
  t.add("grpc-status", "0");
  t.add("Content-Length", "5");
  t.add("host", "evil");
  t.add("Authorization", "Bearer x");
  t.add("transfer-encoding", "chunked");
  t.add("te", "trailers");
  t.add("X-Checksum", "abc");
  NvList l;
  l.buildTrailers(t);
  EXPECT_EQ(dump(l), (Pairs{{"grpc-status", "0"}, {"x-checksum", "abc"}}));

  // A head keeps what only a trailer section may not carry.
  filters::HeaderMap h;
  h.add("Content-Length", "5");
  h.add("Authorization", "Bearer x");
  h.add("te", "trailers");
  h.add("host", "dropped");
  l.build(h, 200);
  EXPECT_EQ(dump(l), (Pairs{{":status", "200"},
                            {"content-length", "5"},
                            {"authorization", "Bearer x"},
                            {"te", "trailers"}}));
}

// What HTTP/2 forbids is left out whatever its case, and names are lowered (RFC 9113 8.2.2).
TEST(NvListTest, ConnectionSpecificFieldsAreLeftOutAndNamesLowered) {
  filters::HeaderMap h;
  for (const char* name : {"Connection", "keep-alive", "Proxy-Connection", "Transfer-Encoding",
                           "UPGRADE", "Host", ":path", "", "TE"}) {
    h.add(name, "x");
  }
  h.add("te", "trailers");
  h.add("Content-Type", "application/grpc");
  h.add("x-LONG-header-name-past-eight-bytes", "v");
  h.add("grpc-timeout", "1S");
  NvList l;
  l.build(h);
  EXPECT_EQ(dump(l), (Pairs{{"te", "trailers"},
                            {"content-type", "application/grpc"},
                            {"x-long-header-name-past-eight-bytes", "v"},
                            {"grpc-timeout", "1S"}}));
}

// The word-at-a-time check agrees with a byte-by-byte one for every byte at every position of
// names from 1 to 17 bytes.
TEST(NvListTest, UpperCaseCheckMatchesTheBytewiseOne) {
  for (size_t len = 1; len <= 17; ++len) {
    for (size_t pos = 0; pos < len; ++pos) {
      for (int b = 0; b < 256; ++b) {
        std::string name(len, 'a');
        name[pos] = static_cast<char>(b);
        const bool expected = b >= 'A' && b <= 'Z';
        ASSERT_EQ(NvList::hasUpper(name), expected)
            << "len " << len << " pos " << pos << " b " << b;
      }
    }
  }
  EXPECT_FALSE(NvList::hasUpper(""));
  EXPECT_FALSE(NvList::hasUpper("@[`{\x80\xc1\xda"));
}

// Values new on every message (the injected trace context, request ids) go out as literals
// without indexing, whatever their case: they would only churn both ends' HPACK tables. The rest
// may be indexed.
TEST(NvListTest, PerMessageValuesAreNotIndexed) {
  filters::HeaderMap h;
  h.add("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  h.add("X-Request-Id", "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
  h.add("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1");
  h.add("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736");
  h.add("x-b3-spanid", "00f067aa0ba902b7");
  h.add("x-b3-parentspanid", "00f067aa0ba902b6");
  h.add("tracestate", "vendor=value");
  h.add("content-type", "application/grpc");
  NvList l;
  l.build(h);
  const nghttp2_nv* nv = l.data();
  ASSERT_EQ(l.size(), 8u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(nv[i].flags, NGHTTP2_NV_FLAG_NO_INDEX) << i;
  }
  EXPECT_EQ(nv[6].flags, NGHTTP2_NV_FLAG_NONE);  // tracestate repeats across requests
  EXPECT_EQ(nv[7].flags, NGHTTP2_NV_FLAG_NONE);
}

}  // namespace
}  // namespace sidetrace::proxy
