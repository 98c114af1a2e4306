#include "proxy/send_now.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace sidetrace::proxy {

void dropSent(std::vector<boost::asio::const_buffer>& bufs, size_t n) {
  size_t whole = 0;
  while (whole < bufs.size() && n >= bufs[whole].size()) {
    n -= bufs[whole].size();
    ++whole;
  }
  bufs.erase(bufs.begin(), bufs.begin() + static_cast<std::ptrdiff_t>(whole));
  if (n > 0) {
    bufs.front() += n;
  }
}

bool sendNow(int fd, std::vector<boost::asio::const_buffer>& bufs, boost::system::error_code& ec) {
  ec.clear();
  // As many buffers as one call takes; a longer list (never seen on the HTTP/1 path) sends its
  // first ones now and the rest through the async_write.
  std::array<iovec, 16> iov;
  const size_t count = std::min(bufs.size(), iov.size());
  size_t total = 0;
  for (size_t i = 0; i < count; ++i) {
    iov[i].iov_base = const_cast<void*>(bufs[i].data());
    iov[i].iov_len = bufs[i].size();
    total += bufs[i].size();
  }
  if (total == 0) {
    bufs.clear();
    return true;
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = count;
  // syscall() rather than sendmsg(): glibc's sendmsg is a thread cancellation point, and in a
  // multi-threaded process it switches asynchronous cancellation on and off around every call
  // (~1% of a worker's CPU across the send and the receive of each request). Nothing here ever
  // cancels a thread, so the plain system call does the same job.
  long n;
  do {
    n = ::syscall(SYS_sendmsg, fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return false;  // the send buffer is full: the async_write waits for room
    }
    ec.assign(errno, boost::system::system_category());
    return true;
  }
  dropSent(bufs, static_cast<size_t>(n));
  return bufs.empty();
}

}  // namespace sidetrace::proxy
