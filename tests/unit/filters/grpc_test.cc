#include "filters/grpc.h"

#include <gtest/gtest.h>

namespace sidetrace::filters {
namespace {

using std::chrono::milliseconds;

RequestHead withContentType(std::string ct) {
  RequestHead r;
  r.method = "POST";
  r.target = "/pkg.Svc/Method";
  r.headers.add("Content-Type", std::move(ct));
  return r;
}

TEST(IsGrpcRequestTest, ContentTypes) {
  EXPECT_TRUE(isGrpcRequest(withContentType("application/grpc")));
  EXPECT_TRUE(isGrpcRequest(withContentType("application/grpc+proto")));
  EXPECT_TRUE(isGrpcRequest(withContentType("application/grpc;charset=utf-8")));
  EXPECT_TRUE(isGrpcRequest(withContentType("Application/GRPC")));
  EXPECT_FALSE(isGrpcRequest(withContentType("application/grpc-web")));
  EXPECT_FALSE(isGrpcRequest(withContentType("application/grpcx")));
  EXPECT_FALSE(isGrpcRequest(withContentType("application/json")));
  EXPECT_FALSE(isGrpcRequest(withContentType("")));
  EXPECT_FALSE(isGrpcRequest(RequestHead{}));
}

TEST(GrpcMethodPathTest, Shapes) {
  EXPECT_EQ(grpcMethodPath("/pkg.Svc/Method"), "pkg.Svc/Method");
  EXPECT_EQ(grpcMethodPath("/grpc.health.v1.Health/Check"), "grpc.health.v1.Health/Check");
  EXPECT_EQ(grpcMethodPath("/a_b.C9/_m"), "a_b.C9/_m");
  for (const char* bad : {"",
                          "/",
                          "/Svc/Method",
                          "/pkg.Svc/",
                          "/pkg.Svc",
                          "/pkg.Svc/Method/extra",
                          "/.Svc/M",
                          "/pkg./M",
                          "/pkg..Svc/M",
                          "/pkg.9Svc/M",
                          "/pkg.Svc/9m",
                          "/pkg.Svc/M-1",
                          "pkg.Svc/M",
                          "/api/orders/12345",
                          "/pkg.Svc/Method?x",
                          "/pkg%2ESvc/M",
                          "/pkg.Svc/Me.thod",
                          "/pkg.Svc//M",
                          "//pkg.Svc/M",
                          "/pkg.Svc/M/",
                          "/pkg.S\xc3\xa9/M"}) {
    EXPECT_EQ(grpcMethodPath(bad), std::nullopt) << bad;
  }
}

TEST(ParseGrpcTimeoutTest, Units) {
  EXPECT_EQ(parseGrpcTimeout("1H"), milliseconds(3600000));
  EXPECT_EQ(parseGrpcTimeout("2M"), milliseconds(120000));
  EXPECT_EQ(parseGrpcTimeout("5S"), milliseconds(5000));
  EXPECT_EQ(parseGrpcTimeout("300m"), milliseconds(300));
  EXPECT_EQ(parseGrpcTimeout("1500u"), milliseconds(2)) << "rounded up, never to zero";
  EXPECT_EQ(parseGrpcTimeout("1n"), milliseconds(1));
  EXPECT_EQ(parseGrpcTimeout("99999999S"), milliseconds(99999999000LL)) << "8 digits allowed";
}

TEST(ParseGrpcTimeoutTest, MalformedIsIgnored) {
  for (const char* bad : {"", "S", "10", "10s", "10x", "-1S", "1.5S", "123456789S", " 1S", "1S "}) {
    EXPECT_FALSE(parseGrpcTimeout(bad)) << bad;
  }
}

TEST(GrpcStatusForHttpTest, Mapping) {
  EXPECT_EQ(grpcStatusForHttp(200), 0);
  EXPECT_EQ(grpcStatusForHttp(400), 13);
  EXPECT_EQ(grpcStatusForHttp(401), 16);
  EXPECT_EQ(grpcStatusForHttp(403), 7);
  EXPECT_EQ(grpcStatusForHttp(404), 12);
  for (int s : {429, 502, 503, 504}) {
    EXPECT_EQ(grpcStatusForHttp(s), 14) << s;
  }
  for (int s : {418, 500, 301}) {
    EXPECT_EQ(grpcStatusForHttp(s), 2) << s;
  }
}

TEST(ParseGrpcStatusTest, Values) {
  HeaderMap h;
  EXPECT_EQ(parseGrpcStatus(h), -1);
  h.add("grpc-status", "5");
  EXPECT_EQ(parseGrpcStatus(h), 5);
  h.set("grpc-status", "14");
  EXPECT_EQ(parseGrpcStatus(h), 14);
  for (const char* bad : {"", "x", "5x", "-1", " 5"}) {
    h.set("grpc-status", bad);
    EXPECT_EQ(parseGrpcStatus(h), -1) << bad;
  }
}

TEST(GrpcServerErrorTest, OnlyServerFaults) {
  for (int code = 0; code <= 16; ++code) {
    const bool fault =
        code == 2 || code == 4 || code == 12 || code == 13 || code == 14 || code == 15;
    EXPECT_EQ(grpcServerError(code), fault) << code;
  }
  EXPECT_FALSE(grpcServerError(-1));
}

}  // namespace
}  // namespace sidetrace::filters
