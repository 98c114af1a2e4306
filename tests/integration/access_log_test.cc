// Access log end to end: the real binary writes one line per request to a file; each line leads to
// its trace (trace_id / span_id of the exported SERVER span); SIGUSR1 reopens the file after a
// logrotate-style rename; an unwritable path is a clear startup error.

#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"

namespace sidetrace::it {
namespace {

using std::chrono::milliseconds;

class AccessLogTest : public IntegrationTest {
 protected:
  // The standard config plus an access_log section writing to a file in the test's directory.
  std::string startWithAccessLog(const std::string& format, const ProxyConfig& c = {},
                                 const std::string& extra = "") {
    std::string marker = proc_.writeFile("marker", "");
    std::string path = marker.substr(0, marker.rfind('/') + 1) + "access.log";
    std::string yaml = standardConfigYaml(c) + "access_log: { path: \"" + path +
                       "\", format: " + format + extra + " }\n";
    startProxyYaml(yaml);
    return path;
  }

  static std::vector<std::string> readLines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
      lines.push_back(line);
    }
    return lines;
  }

  // Lines reach the file within about a second (periodic flush); wait for n of them.
  static std::vector<std::string> waitLines(const std::string& path, size_t n,
                                            milliseconds timeout = milliseconds(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<std::string> lines;
    while (std::chrono::steady_clock::now() < deadline) {
      lines = readLines(path);
      if (lines.size() >= n) {
        break;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    return lines;
  }

  // The raw JSON text of a field: "\"abc\"" for strings, "200" for numbers.
  static std::string field(const std::string& line, const std::string& key) {
    std::string k = "\"" + key + "\":";
    size_t p = line.find(k);
    if (p == std::string::npos) {
      return "<missing>";
    }
    p += k.size();
    size_t end = p;
    if (line[p] == '"') {
      for (end = p + 1; end < line.size() && line[end] != '"'; ++end) {
        if (line[end] == '\\') {
          ++end;
        }
      }
      ++end;
    } else {
      end = line.find_first_of(",}", p);
    }
    return line.substr(p, end - p);
  }
};

TEST_F(AccessLogTest, JsonLineCarriesTheTraceOfTheRequest) {
  std::string path = startWithAccessLog("json");
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  auto r = httpRequest(port(), "GET", "/api/items?token=secret&page=2",
                       {{"traceparent", "00-" + trace + "-00f067aa0ba902b7-01"},
                        {"User-Agent", "it \"quoted\" agent"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);

  auto spans = waitSpansSettled(otlp_, 2);
  auto servers = spansOfKind(spans, 2);
  ASSERT_EQ(servers.size(), 1u) << describeAll(spans);

  auto lines = waitLines(path, 1);
  ASSERT_EQ(lines.size(), 1u) << proc_.logs();
  const std::string& line = lines[0];
  EXPECT_EQ(line.front(), '{');
  EXPECT_EQ(line.back(), '}');
  EXPECT_EQ(field(line, "trace_id"), "\"" + trace + "\"");
  EXPECT_EQ(field(line, "span_id"), "\"" + servers[0].span_id + "\"")
      << "span_id must be the SERVER span's id";
  EXPECT_EQ(field(line, "sampled"), "true");
  EXPECT_EQ(field(line, "route"), "\"app\"");
  EXPECT_EQ(field(line, "listener"), "\"ingress\"");
  EXPECT_EQ(field(line, "method"), "\"GET\"");
  EXPECT_EQ(field(line, "path"), "\"/api/items?token=REDACTED&page=REDACTED\"");
  EXPECT_EQ(field(line, "status"), "200");
  EXPECT_EQ(field(line, "upstream_status"), "200");
  EXPECT_EQ(field(line, "user_agent"), "\"it \\\"quoted\\\" agent\"");
  EXPECT_EQ(field(line, "client"), "\"127.0.0.1\"");
  EXPECT_EQ(field(line, "upstream").rfind("\"127.0.0.1:", 0), 0u) << line;
  EXPECT_NE(field(line, "duration_ms"), "<missing>");
  EXPECT_NE(field(line, "upstream_ms"), "null") << line;
  EXPECT_NE(field(line, "request_id"), "\"\"") << line;
}

TEST_F(AccessLogTest, IgnoredAndFailedRequestsAreLoggedWithoutATrace) {
  ProxyConfig c;
  c.ignore = "[ { path: /health } ]";
  std::string path = startWithAccessLog("json", c);
  ASSERT_TRUE(httpRequest(port(), "GET", "/health"));
  ASSERT_TRUE(httpRequest(port(), "GET", "/nowhere"));  // no route: 404 from the proxy
  ASSERT_TRUE(httpRequest(port(), "GET", "/dead/x"));   // refused upstream: 502
  auto lines = waitLines(path, 3);
  ASSERT_EQ(lines.size(), 3u) << proc_.logs();
  // Each worker writes its line after the response went out, so two workers' lines may land in
  // either order: put them in request order by path.
  auto rank = [&](const std::string& l) {
    const std::string p = field(l, "path");
    return p == "\"/health\"" ? 0 : p == "\"/nowhere\"" ? 1 : 2;
  };
  std::sort(lines.begin(), lines.end(),
            [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
  EXPECT_EQ(field(lines[0], "path"), "\"/health\"");
  EXPECT_EQ(field(lines[0], "trace_id"), "\"\"") << "ignored requests have no trace";
  EXPECT_EQ(field(lines[0], "sampled"), "false");
  EXPECT_EQ(field(lines[1], "status"), "404");
  EXPECT_EQ(field(lines[1], "route"), "\"\"");
  EXPECT_EQ(field(lines[2], "status"), "502");
  EXPECT_EQ(field(lines[2], "error"), "\"connect_failure\"") << lines[2];
  EXPECT_EQ(field(lines[2], "upstream_ms"), "null");
}

// The lines waiting for the log thread are bounded by bytes: a line carries the path and the user
// agent (up to the header limit each). One that does not fit is dropped and counted.
TEST_F(AccessLogTest, LinesOverTheQueueBytesAreDroppedAndCounted) {
  std::string path = startWithAccessLog("json", {}, ", max_queue_bytes: 8000");
  auto big = httpRequest(port(), "GET", "/api/big-line",
                         {{"User-Agent", "big/" + std::string(20000, 'u')}});
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 200);
  auto small = httpRequest(port(), "GET", "/api/small-line");
  ASSERT_TRUE(small);
  EXPECT_EQ(small->status, 200);
  auto lines = waitLines(path, 1);
  EXPECT_GE(waitMetric("sidetrace_access_log_dropped_total", "", 1), 1);
  std::this_thread::sleep_for(milliseconds(1500));  // a wrongly kept line would be flushed by now
  lines = readLines(path);
  ASSERT_EQ(lines.size(), 1u) << proc_.logs();
  EXPECT_EQ(field(lines[0], "path"), "\"/api/small-line\"");
  EXPECT_EQ(metricSum(metrics(), "sidetrace_access_log_dropped_total", ""), 1);
}

TEST_F(AccessLogTest, TextFormatIsCombinedPlusTraceIds) {
  std::string path = startWithAccessLog("text");
  ASSERT_TRUE(httpRequest(port(), "GET", "/api/t", {{"User-Agent", "ua/1"}}));
  auto lines = waitLines(path, 1);
  ASSERT_EQ(lines.size(), 1u) << proc_.logs();
  const std::string& line = lines[0];
  EXPECT_EQ(line.rfind("127.0.0.1 - - [", 0), 0u) << line;
  EXPECT_NE(line.find("] \"GET /api/t HTTP/1.1\" 200 "), std::string::npos) << line;
  EXPECT_NE(line.find(" \"-\" \"ua/1\" "), std::string::npos) << line;
  EXPECT_NE(line.find(" route=app "), std::string::npos) << line;
  size_t t = line.find(" trace_id=");
  ASSERT_NE(t, std::string::npos) << line;
  EXPECT_TRUE(isLowerHex(line.substr(t + 10, 32), 32)) << line;
  EXPECT_NE(line.find(" sampled=1"), std::string::npos) << line;
}

// Secrets in a query reach no log line: not in a bare query item ("?k3y"), not in the Referer's
// query (the text format writes the Referer).
TEST_F(AccessLogTest, TextFormatRedactsBareQueryItemsAndTheReferer) {
  std::string path = startWithAccessLog("text");
  ASSERT_TRUE(httpRequest(port(), "GET", "/api/t?s3cr3tbare&page=2",
                          {{"Referer", "https://shop.example/cart?session=s3cr3tref&s3cr3tflag"}}));
  auto lines = waitLines(path, 1);
  ASSERT_EQ(lines.size(), 1u) << proc_.logs();
  const std::string& line = lines[0];
  EXPECT_NE(line.find("] \"GET /api/t?REDACTED&page=REDACTED HTTP/1.1\" 200 "), std::string::npos)
      << line;
  EXPECT_NE(line.find(" \"https://shop.example/cart?session=REDACTED&REDACTED\" "),
            std::string::npos)
      << line;
  EXPECT_EQ(line.find("s3cr3t"), std::string::npos) << line;
}

TEST_F(AccessLogTest, Sigusr1ReopensTheFileAfterRotation) {
  std::string path = startWithAccessLog("json");
  ASSERT_TRUE(httpRequest(port(), "GET", "/api/before"));
  ASSERT_EQ(waitLines(path, 1).size(), 1u) << proc_.logs();
  ASSERT_EQ(std::rename(path.c_str(), (path + ".1").c_str()), 0);
  ASSERT_EQ(::kill(proc_.pid(), SIGUSR1), 0);
  // The reopen is asynchronous: keep sending until a line shows up in the new file.
  std::vector<std::string> fresh;
  for (int i = 0; i < 40 && fresh.empty(); ++i) {
    ASSERT_TRUE(httpRequest(port(), "GET", "/api/after"));
    fresh = waitLines(path, 1, milliseconds(250));
  }
  ASSERT_FALSE(fresh.empty()) << "no line in the reopened file\n" << proc_.logs();
  EXPECT_EQ(field(fresh[0], "path"), "\"/api/after\"");
  auto rotated = readLines(path + ".1");
  ASSERT_FALSE(rotated.empty());
  EXPECT_EQ(field(rotated[0], "path"), "\"/api/before\"");
  EXPECT_TRUE(proc_.running()) << "SIGUSR1 must not stop the proxy";
  stopProxyExpectClean();
}

TEST_F(AccessLogTest, UnwritablePathIsAStartupError) {
  std::string yaml =
      standardConfigYaml({}) + "access_log: { path: /dev/null/access.log, format: json }\n";
  ASSERT_TRUE(proc_.startWithConfig(yaml, vars()));
  auto r = proc_.wait();
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.code, 1);
  std::string err = proc_.stderrText() + proc_.stdoutText();
  EXPECT_NE(err.find("access_log.path"), std::string::npos) << err;
  EXPECT_NE(err.find("/dev/null/access.log"), std::string::npos) << err;
}

}  // namespace
}  // namespace sidetrace::it
