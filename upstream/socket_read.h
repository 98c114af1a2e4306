// A read on a plain TCP socket that tells asio's reactor when it drained the socket, so the next
// read waits for the kernel's readiness event instead of first trying a recv() that can only
// fail with EAGAIN.
//
// Why: asio (1.74 and still today) marks a socket "worth a speculative read" after every read that
// returned data. A proxy reads each request and each response once and then waits for the next:
// so every wait began with a recv() returning EAGAIN — two wasted system calls per proxied
// HTTP/1.1 request, ~4 recv per request where nginx makes 2. nginx and HAProxy keep a "ready" flag
// per socket that a short read clears. asio has the same flag (per-descriptor try_speculative_,
// cleared when an operation reports done_and_exhausted); it only reports that at end of stream.
// This operation reports it after a short read too: fewer bytes than the buffer holds means the
// receive queue was empty at that moment, and the edge-triggered epoll registration delivers an
// event for anything that arrives later, which turns speculation back on before the queued read
// runs. An error keeps speculation on, as asio does (the error is read again at once).
//
// It is asio's own reactive_socket_recv_op with that difference (and recvfrom made as a plain
// system call, below), built on the same detail API (Debian's Boost 1.74), so cancellation, close
// and completion behave as for async_read_some. TLS streams get it through DrainAwareSocket, their
// next layer (ssl::stream reads that itself).
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>  // before asio (DEPENDENCIES.md 1)

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/detail/bind_handler.hpp>
#include <boost/asio/detail/fenced_block.hpp>
#include <boost/asio/detail/handler_alloc_helpers.hpp>
#include <boost/asio/detail/handler_cont_helpers.hpp>
#include <boost/asio/detail/handler_work.hpp>
#include <boost/asio/detail/reactive_socket_service_base.hpp>
#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/version.hpp>

// The operation is written against Boost 1.74's asio internals (Debian 12's, DEPENDENCIES.md);
// later versions changed them, so there the read is asio's own, only without the saving.
#define SIDETRACE_DRAIN_AWARE_READS (BOOST_VERSION == 107400)

namespace sidetrace::upstream {
#if SIDETRACE_DRAIN_AWARE_READS
namespace socket_read_detail {

namespace ad = boost::asio::detail;

// The socket's service-level state (descriptor, reactor registration) and the service's start_op,
// which basic_socket and the service keep protected: a pointer to a protected member named
// through a derived class is the standard way to reach them.
struct SocketImplAccess : boost::asio::ip::tcp::socket {
  static auto& impl(boost::asio::ip::tcp::socket& s) { return s.*(&SocketImplAccess::impl_); }
};
struct ServiceAccess : ad::reactive_socket_service_base {
  // Registers `op` with the socket's reactor (asio's own path for a read: non-blocking mode,
  // then a speculative attempt or the queue).
  static void startRead(ad::reactive_socket_service_base& service,
                        ad::reactive_socket_service_base::base_implementation_type& impl,
                        ad::reactor_op* op, bool is_continuation, bool noop) {
    (service.*(&ServiceAccess::start_op))(impl, ad::reactor::read_op, op, is_continuation, true,
                                          noop);
  }
};

template <class Handler, class IoExecutor>
class DrainAwareRecvOp : public ad::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(DrainAwareRecvOp);

  DrainAwareRecvOp(int fd, boost::asio::mutable_buffer buffer, Handler& handler,
                   const IoExecutor& io_ex)
      : ad::reactor_op(boost::system::error_code(), &DrainAwareRecvOp::doPerform,
                       &DrainAwareRecvOp::doComplete),
        fd_(fd),
        buffer_(buffer),
        handler_(static_cast<Handler&&>(handler)),
        work_(handler_, io_ex) {}

  static status doPerform(ad::reactor_op* base) {
    auto* o = static_cast<DrainAwareRecvOp*>(base);
    long n;
    do {
      // syscall() rather than recv(): glibc's recv is a thread cancellation point, which in a
      // multi-threaded process costs switching asynchronous cancellation on and off around every
      // call; nothing here cancels threads (proxy/send_now.cc does the same for sendmsg).
      n = ::syscall(SYS_recvfrom, o->fd_, o->buffer_.data(), o->buffer_.size(), 0, nullptr,
                    nullptr);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return not_done;  // stays queued for the next readiness event
      }
      o->ec_ = boost::system::error_code(errno, boost::asio::error::get_system_category());
      o->bytes_transferred_ = 0;
      return done;  // an error: a later read sees it again at once
    }
    o->bytes_transferred_ = static_cast<size_t>(n);
    if (n == 0) {
      o->ec_ = boost::asio::error::eof;
    }
    // End of stream (asio's own case) or a short read: nothing is left in the receive queue.
    return o->bytes_transferred_ < o->buffer_.size() ? done_and_exhausted : done;
  }

  static void doComplete(void* owner, ad::operation* base, const boost::system::error_code&,
                         std::size_t) {
    auto* o = static_cast<DrainAwareRecvOp*>(base);
    ptr p = {std::addressof(o->handler_), o, o};
    ad::handler_work<Handler, IoExecutor> w(std::move(o->work_));
    // The handler is moved out before the operation's memory is freed: it may own that memory.
    ad::binder2<Handler, boost::system::error_code, std::size_t> handler(o->handler_, o->ec_,
                                                                         o->bytes_transferred_);
    p.h = std::addressof(handler.handler_);
    p.reset();
    if (owner) {
      ad::fenced_block b(ad::fenced_block::half);
      w.complete(handler, handler.handler_);
    }
  }

 private:
  int fd_;
  boost::asio::mutable_buffer buffer_;
  Handler handler_;
  ad::handler_work<Handler, IoExecutor> work_;
};

struct InitiateRead {
  template <class Handler>
  void operator()(Handler&& handler, boost::asio::ip::tcp::socket* socket,
                  boost::asio::mutable_buffer buffer) const {
    using H = std::decay_t<Handler>;
    using IoExecutor = boost::asio::ip::tcp::socket::executor_type;
    using Op = DrainAwareRecvOp<H, IoExecutor>;
    H h(static_cast<Handler&&>(handler));
    auto& io_object = SocketImplAccess::impl(*socket);
    auto& impl = io_object.get_implementation();
    const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(h);
    typename Op::ptr p = {std::addressof(h), Op::ptr::allocate(h), nullptr};
    p.p = new (p.v) Op(impl.socket_, buffer, h, io_object.get_executor());
    // An empty buffer completes at once with nothing, as asio's read does.
    ServiceAccess::startRead(io_object.get_service(), impl, p.p, is_continuation,
                             buffer.size() == 0);
    p.v = p.p = nullptr;
  }
};

}  // namespace socket_read_detail
#endif

// stream.async_read_some(buffer, token); on a plain tcp::socket, a short read also tells the
// reactor the socket is drained (see above). Same completion signature, errors and cancellation.
template <class Stream, class Token>
auto asyncReadSome(Stream& stream, boost::asio::mutable_buffer buffer, Token&& token) {
#if SIDETRACE_DRAIN_AWARE_READS
  if constexpr (std::is_same_v<Stream, boost::asio::ip::tcp::socket>) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        socket_read_detail::InitiateRead{}, token, &stream, buffer);
  } else
#endif
  {
    return stream.async_read_some(buffer, std::forward<Token>(token));
  }
}

// A tcp::socket whose async_read_some is the one above: for a stack that reads its next layer
// itself, so TLS connections (ssl::stream<DrainAwareSocket>) skip the same failing recv() as
// plain ones. Everything else is the tcp::socket it is.
class DrainAwareSocket : public boost::asio::ip::tcp::socket {
 public:
  using Base = boost::asio::ip::tcp::socket;
  using Base::Base;
  explicit DrainAwareSocket(Base&& socket) : Base(std::move(socket)) {}

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    if constexpr (std::is_convertible_v<MutableBuffers, boost::asio::mutable_buffer>) {
      return asyncReadSome(static_cast<Base&>(*this), boost::asio::mutable_buffer(buffers),
                           std::forward<Token>(token));
    } else {
      return Base::async_read_some(buffers, std::forward<Token>(token));
    }
  }
};

}  // namespace sidetrace::upstream
