#include "tracing/gzip.h"

#include <zlib.h>

#include <climits>

namespace sidetrace::tracing {

struct GzipCompressor::Impl {
  z_stream zs{};
  bool ready = false;
};

GzipCompressor::GzipCompressor() : impl_(std::make_unique<Impl>()) {
  // windowBits 15 + 16: a gzip header and trailer around the deflate stream.
  impl_->ready = deflateInit2(&impl_->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                              Z_DEFAULT_STRATEGY) == Z_OK;
}

GzipCompressor::~GzipCompressor() {
  if (impl_->ready) {
    deflateEnd(&impl_->zs);
  }
}

bool GzipCompressor::compress(std::string_view in, std::string& out) {
  z_stream& zs = impl_->zs;
  if (!impl_->ready || in.size() > UINT_MAX || deflateReset(&zs) != Z_OK) {
    return false;
  }
  // deflateBound is what one Z_FINISH call can need at most, so a single call completes.
  out.resize(deflateBound(&zs, static_cast<uLong>(in.size())));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
    out.clear();
    return false;
  }
  out.resize(zs.total_out);
  return true;
}

}  // namespace sidetrace::tracing
