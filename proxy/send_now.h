#pragma once
// A write tried at once, before an async_write: on a plain TCP socket with room in its send buffer
// (nearly always, for a head and a small body) the bytes go out in one system call and the
// coroutine does not suspend, which spares the reactor operation, the scheduler's queue and the
// resumption that an async_write costs even when its first, speculative attempt sends everything.
// What the socket does not take at once is left in the buffer list for the async_write that
// follows, so the bytes on the wire and their order are the same either way. Plain sockets only:
// a TLS stream must write through OpenSSL.

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <vector>

namespace sidetrace::proxy {

// Sends what `fd` takes now of `bufs` (sendmsg with MSG_DONTWAIT | MSG_NOSIGNAL) and drops the
// bytes sent from the front of `bufs`. True when nothing is left to write: all of it went out,
// or the connection failed (`ec` set). False, `ec` clear: the rest waits for an async_write.
bool sendNow(int fd, std::vector<boost::asio::const_buffer>& bufs, boost::system::error_code& ec);

// Drops the first `n` bytes of `bufs` (whole buffers, then the front of the one cut through).
void dropSent(std::vector<boost::asio::const_buffer>& bufs, size_t n);

}  // namespace sidetrace::proxy
