#pragma once
// An HTTP/2 origin for integration tests: runs tests/integration/h2_upstream.js (Node's built-in
// http2 module, so the proxy's h2 client side is checked against an implementation it does not
// share) on an ephemeral port. See the script for what each path does. Node missing or failing
// to start is an error the test reports, never a skip.

#include <cstdint>
#include <map>
#include <string>

#include "tests/integration/net.h"

namespace sidetrace::it {

class H2Upstream {
 public:
  // Starts the script with `node`, logs in `dir`; max_concurrent_streams > 0 is advertised in
  // its SETTINGS. Check ok() / error().
  explicit H2Upstream(const std::string& dir, int max_concurrent_streams = 0,
                      const std::string& node = defaultNode());
  ~H2Upstream();  // kills the process
  H2Upstream(const H2Upstream&) = delete;
  H2Upstream& operator=(const H2Upstream&) = delete;

  bool ok() const { return port_ != 0; }
  const std::string& error() const { return error_; }
  uint16_t port() const { return port_; }

  // GET /stats over a fresh h2 connection: connections, streams, open_streams,
  // max_open_streams, peer_resets (see the script). Empty on failure.
  std::map<std::string, int64_t> stats();
  // Polls stats() until `name` reaches at least `min`; returns the last value (-1 if none).
  int64_t waitStat(const std::string& name, int64_t min, Millis timeout = Millis(5000));
  std::string logs() const;  // the script's stdout and stderr

  static std::string defaultNode();  // SIDETRACE_IT_NODE
  static std::string scriptPath();   // tests/integration/h2_upstream.js

 private:
  int pid_ = -1;
  int stdin_fd_ = -1;  // the child's stdin: closing it (or our death) makes the script exit
  uint16_t port_ = 0;
  std::string out_, err_;
  std::string error_;
};

}  // namespace sidetrace::it
