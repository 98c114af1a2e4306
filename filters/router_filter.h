#pragma once
// Router: picks the route (first match), turns direct_response routes, misses (404) and CONNECT
// (405: listeners are reverse proxies, never tunnels; the egress listener's checked CONNECT is
// the one exception) into local replies. The proxy then carries
// out the upstream exchange for stream.route->cluster.

#include "filters/filter.h"

namespace sidetrace::filters {

class RouterFilter : public Filter {
 public:
  FilterStatus onRequest(Stream& s) override;
};

}  // namespace sidetrace::filters
