#pragma once
// Header policy: removes hop-by-hop headers (RFC 9110 §7.6.1, plus those named in Connection),
// appends X-Forwarded-For / sets X-Forwarded-Proto, adds X-Request-Id when absent. Upgrade
// requests keep `Connection: upgrade` and `Upgrade` so the tunnel can form.

#include "filters/filter.h"
#include "tracing/trace_context.h"

namespace sidetrace::filters {

class HeaderPolicyFilter : public Filter {
 public:
  FilterStatus onRequest(Stream& s) override;
  void onResponse(Stream& s, ResponseHead& head) override;

 private:
  tracing::IdGenerator ids_;  // x-request-id source (per worker)
};

// Strip hop-by-hop headers in place; keeps upgrade headers when keep_upgrade.
void removeHopByHop(HeaderMap& headers, bool keep_upgrade);

}  // namespace sidetrace::filters
