#pragma once
// Route matching as a pure function of the listener's routes and the request head, so it can be
// tested alone. First match wins (ARCHITECTURE §5).

#include <optional>

#include "config/config.h"
#include "filters/http_message.h"

namespace sidetrace::filters {

bool hostMatches(const std::string& pattern, std::string_view host);
bool routeMatches(const config::RouteMatch& m, const RequestHead& req);
// Index of the first matching route, or nullopt.
std::optional<size_t> matchRoute(const config::Listener& listener, const RequestHead& req);

}  // namespace sidetrace::filters
