#pragma once
// Router: picks the route (first match), turns direct_response routes and misses (404) into local
// replies. The proxy then carries out the upstream exchange for stream.route->cluster.

#include "filters/filter.h"

namespace sidetrace::filters {

class RouterFilter : public Filter {
 public:
  FilterStatus onRequest(Stream& s) override;
};

}  // namespace sidetrace::filters
