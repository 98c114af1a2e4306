#pragma once
// One downstream HTTP/1.x connection: a coroutine that reads a request head, runs the filter chain,
// carries out the upstream exchange (pooled connection, body streamed both ways with back-pressure:
// it never reads more from one side than it has written to the other), and loops for keep-alive and
// pipelining, one request at a time in order.
//
// Limits applied here: header block size (431), header timeout (408), idle timeout, route timeout
// (504, or connection abort once the response has started). Chunked trailers are not forwarded.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "filters/stream.h"
#include "proxy/flat_buffer.h"
#include "proxy/http1_codec.h"
#include "upstream/connection_pool.h"
#include "upstream/deadline.h"

namespace sidetrace::proxy {

class Worker;
struct WorkerGeneration;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Worker& worker, boost::asio::ip::tcp::socket socket, size_t listener_index);
  ~Session();
  static void start(std::shared_ptr<Session> self);
  // Drain: close now if idle between requests, else close after the current response.
  void closeIfIdle();

 private:
  enum class HeadStatus { Ok, Closed, Error, Timeout };
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<HeadStatus> readRequestHead(FeedResult& first);
  boost::asio::awaitable<bool> handleRequest(FeedResult& first);
  boost::asio::awaitable<bool> sendLocalReply(int status, std::string_view body, bool close);
  boost::asio::awaitable<void> sendError(int status);
  boost::asio::awaitable<void> tunnel(upstream::UpstreamConnection& up, FlatBuffer& upbuf);
  void finishStream(uint64_t start_ns);

  Worker& worker_;
  std::shared_ptr<WorkerGeneration> gen_;  // while a request runs: the generation it started on
  boost::asio::ip::tcp::socket socket_;
  size_t listener_index_;
  upstream::Deadline deadline_;
  FlatBuffer in_;
  FlatBuffer upbuf_;
  Http1Parser parser_;
  Http1Parser up_parser_;
  filters::Stream stream_;
  // What one write sends: an optional head, then the body pieces of one feed (as-is, or as one
  // chunk when re-chunking), then the last-chunk marker when the message ends. Reused, so the data
  // path does not allocate a buffer list per write.
  struct Gather {
    std::vector<boost::asio::const_buffer> bufs;
    char size_line[24];
    uint64_t bytes = 0;  // body bytes in bufs
    void build(std::string_view head, const std::vector<std::string_view>& pieces, bool chunked,
               bool last);
  };

  std::string out_;  // reused serialization buffer
  Gather gather_;
  bool idle_ = true;
  bool close_after_ = false;
};

}  // namespace sidetrace::proxy
