#include "tracing/propagator.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>

namespace sidetrace::tracing {

namespace {

constexpr std::string_view kTraceparent = "traceparent";
constexpr std::string_view kTracestate = "tracestate";
constexpr std::string_view kBaggage = "baggage";
constexpr std::string_view kB3 = "b3";
constexpr std::string_view kB3TraceId = "x-b3-traceid";
constexpr std::string_view kB3SpanId = "x-b3-spanid";
constexpr std::string_view kB3ParentSpanId = "x-b3-parentspanid";
constexpr std::string_view kB3Sampled = "x-b3-sampled";
constexpr std::string_view kB3Flags = "x-b3-flags";

// W3C limits: tracestate carries at most 32 list members; baggage's grammar allows at most 180
// list members and we cap the header at 8192 bytes (the spec's minimum a platform must carry).
constexpr size_t kMaxTracestateMembers = 32;
// Propagate at least 512 characters of tracestate; cut longer lists, members over 128 first.
constexpr size_t kMaxTracestateChars = 512;
constexpr size_t kMaxTracestateMemberChars = 128;
constexpr size_t kMaxBaggageMembers = 180;
constexpr size_t kMaxBaggageBytes = 8192;

bool isLowerHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}
bool isLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return isLowerHex(c); });
}
bool isLcAlpha(char c) {
  return c >= 'a' && c <= 'z';
}
bool isDigit(char c) {
  return c >= '0' && c <= '9';
}
bool isOws(char c) {
  return c == ' ' || c == '\t';
}

uint8_t hexByte(std::string_view two) {
  auto v = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  return static_cast<uint8_t>((v(two[0]) << 4) | v(two[1]));
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && isOws(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

// Splits on ',' and calls fn(member) for each (untrimmed) piece; stops when fn returns false.
template <typename Fn>
bool forEachListMember(std::string_view list, Fn&& fn) {
  while (true) {
    size_t comma = list.find(',');
    if (!fn(list.substr(0, comma))) {
      return false;
    }
    if (comma == std::string_view::npos) {
      return true;
    }
    list.remove_prefix(comma + 1);
  }
}

// tracestate key: simple-key = lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/"), or
// multi-tenant-key = tenant-id "@" system-id with tenant-id = (lcalpha / DIGIT) 0*240(...) and
// system-id = lcalpha 0*13(...).
bool isKeyChar(char c) {
  return isLcAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

bool validTracestateKey(std::string_view key) {
  size_t at = key.find('@');
  if (at == std::string_view::npos) {
    return !key.empty() && key.size() <= 256 && isLcAlpha(key[0]) &&
           std::all_of(key.begin() + 1, key.end(), isKeyChar);
  }
  std::string_view tenant = key.substr(0, at);
  std::string_view system = key.substr(at + 1);
  return !tenant.empty() && tenant.size() <= 241 && (isLcAlpha(tenant[0]) || isDigit(tenant[0])) &&
         std::all_of(tenant.begin() + 1, tenant.end(), isKeyChar) && !system.empty() &&
         system.size() <= 14 && isLcAlpha(system[0]) &&
         std::all_of(system.begin() + 1, system.end(), isKeyChar);
}

// value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-7E except "," and "=".
bool validTracestateValue(std::string_view value) {
  if (value.empty() || value.size() > 256 || value.back() == ' ') {
    return false;
  }
  return std::all_of(value.begin(), value.end(),
                     [](char c) { return c >= 0x20 && c <= 0x7e && c != ',' && c != '='; });
}

// RFC 9110 token characters (baggage keys).
bool isTchar(char c) {
  if (isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool validToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isTchar);
}

// baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E (no space, '"', ',', ';', '\').
bool validBaggageValue(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
  });
}

// key OWS "=" OWS value, or (for properties only) a bare key.
bool validBaggagePair(std::string_view s, bool allow_bare_key) {
  s = trimOws(s);
  size_t eq = s.find('=');
  if (eq == std::string_view::npos) {
    return allow_bare_key && validToken(s);
  }
  return validToken(trimOws(s.substr(0, eq))) && validBaggageValue(trimOws(s.substr(eq + 1)));
}

bool validBaggageMember(std::string_view member) {
  size_t semi = member.find(';');
  if (!validBaggagePair(member.substr(0, semi), /*allow_bare_key=*/false)) {
    return false;
  }
  while (semi != std::string_view::npos) {
    member.remove_prefix(semi + 1);
    semi = member.find(';');
    if (!validBaggagePair(member.substr(0, semi), /*allow_bare_key=*/true)) {
      return false;
    }
  }
  return true;
}

// B3 trace ids are 16 or 32 lower-hex digits; 64-bit ids are left-padded to 128 bits.
TraceId parseB3TraceId(std::string_view hex) {
  if (hex.size() == 16) {
    std::string padded(16, '0');
    padded.append(hex);
    return TraceId::fromHex(padded);
  }
  return TraceId::fromHex(hex);
}

class TraceContextPropagator final : public Propagator {
 public:
  std::optional<SpanContext> extract(const HeaderCarrier& carrier) const override {
    auto traceparent = carrier.get(kTraceparent);
    // traceparent is not a list: two lines combine into something that does not parse, so the
    // spec's rule (invalid: start a new trace) applies rather than picking one of them.
    if (!traceparent || carrier.count(kTraceparent) != 1) {
      return std::nullopt;
    }
    // HTTP strips OWS around field values; be tolerant if the carrier did not.
    auto ctx = parseTraceparent(trimOws(*traceparent));
    if (!ctx) {
      return std::nullopt;
    }
    std::string scratch;
    if (auto tracestate = carrier.getList(kTracestate, scratch)) {
      ctx->tracestate = sanitizeTracestate(*tracestate).value_or(std::string());
    }
    return ctx;
  }

  void inject(const SpanContext& ctx, HeaderCarrier& carrier) const override {
    char buf[kTraceparentSize];
    carrier.set(kTraceparent, formatTraceparent(ctx, buf));
    if (ctx.tracestate.empty()) {
      carrier.remove(kTracestate);
    } else {
      carrier.set(kTracestate, ctx.tracestate);
    }
  }
};

class B3Propagator final : public Propagator {
 public:
  explicit B3Propagator(bool inject_multi) : inject_multi_(inject_multi) {}

  std::optional<SpanContext> extract(const HeaderCarrier& carrier) const override {
    // OpenTelemetry's B3 spec: both variants read both forms; the single header wins.
    if (auto single = carrier.get(kB3)) {
      if (auto ctx = parseB3Single(trimOws(*single))) {
        return ctx;
      }
    }
    return extractMulti(carrier);
  }

  void inject(const SpanContext& ctx, HeaderCarrier& carrier) const override {
    // Debug implies an accept decision: B3 sends "d" / X-B3-Flags: 1 instead of a sampled state.
    const char* sampled = ctx.debug ? "d" : ctx.sampled() ? "1" : "0";
    // Headers of the other form (and a stale parent id / debug flag) would describe the caller's
    // span, and a stale `b3` would even win over fresh multi headers: remove them.
    if (inject_multi_) {
      carrier.remove(kB3);
      carrier.remove(kB3ParentSpanId);
      carrier.set(kB3TraceId, ctx.trace_id.hex());
      carrier.set(kB3SpanId, ctx.span_id.hex());
      if (ctx.debug) {
        carrier.remove(kB3Sampled);
        carrier.set(kB3Flags, "1");
      } else {
        carrier.remove(kB3Flags);
        carrier.set(kB3Sampled, sampled);
      }
    } else {
      carrier.remove(kB3TraceId);
      carrier.remove(kB3SpanId);
      carrier.remove(kB3ParentSpanId);
      carrier.remove(kB3Sampled);
      carrier.remove(kB3Flags);
      std::string value = ctx.trace_id.hex();
      value += '-';
      value += ctx.span_id.hex();
      value += '-';
      value += sampled;
      carrier.set(kB3, value);
    }
  }

 private:
  static std::optional<SpanContext> extractMulti(const HeaderCarrier& carrier) {
    auto trace_hex = carrier.get(kB3TraceId);
    auto span_hex = carrier.get(kB3SpanId);
    if (!trace_hex || !span_hex) {
      return std::nullopt;
    }
    SpanContext ctx;
    ctx.trace_id = parseB3TraceId(trimOws(*trace_hex));
    ctx.span_id = SpanId::fromHex(trimOws(*span_hex));
    if (!ctx.valid()) {
      return std::nullopt;
    }
    // Absent sampling state means "deferred"; like the OpenTelemetry SDKs we read it as not
    // sampled.
    if (auto flags = carrier.get(kB3Flags); flags && trimOws(*flags) == "1") {
      ctx.flags = kFlagSampled;  // debug implies sampled
      ctx.debug = true;
    } else if (auto sampled = carrier.get(kB3Sampled)) {
      std::string_view s = trimOws(*sampled);
      if (s == "1" || s == "true") {
        ctx.flags = kFlagSampled;
      } else if (s != "0" && s != "false") {
        return std::nullopt;
      }
    }
    ctx.remote = true;
    return ctx;
  }

  bool inject_multi_;
};

}  // namespace

std::optional<SpanContext> parseTraceparent(std::string_view value) {
  // version "-" trace-id "-" parent-id "-" trace-flags; 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55.
  constexpr size_t kLen = 55;
  if (value.size() < kLen) {
    return std::nullopt;
  }
  std::string_view version = value.substr(0, 2);
  if (!isLowerHex(version) || version == "ff") {
    return std::nullopt;
  }
  if (version == "00" && value.size() != kLen) {
    return std::nullopt;
  }
  // A future version keeps the 00 layout as its prefix and may append "-" and more fields.
  if (value.size() > kLen && value[kLen] != '-') {
    return std::nullopt;
  }
  if (value[2] != '-' || value[35] != '-' || value[52] != '-') {
    return std::nullopt;
  }
  std::string_view trace_hex = value.substr(3, 32);
  std::string_view span_hex = value.substr(36, 16);
  std::string_view flags_hex = value.substr(53, 2);
  if (!isLowerHex(trace_hex) || !isLowerHex(span_hex) || !isLowerHex(flags_hex)) {
    return std::nullopt;
  }
  SpanContext ctx;
  ctx.trace_id = TraceId::fromHex(trace_hex);
  ctx.span_id = SpanId::fromHex(span_hex);
  if (!ctx.valid()) {
    return std::nullopt;
  }
  // Sampled and random have a meaning we keep; other bits are ignored, never a reason to reject.
  ctx.flags = hexByte(flags_hex) & (kFlagSampled | kFlagRandom);
  ctx.remote = true;
  return ctx;
}

std::string formatTraceparent(const SpanContext& ctx) {
  char buf[kTraceparentSize];
  return std::string(formatTraceparent(ctx, buf));
}

std::string_view formatTraceparent(const SpanContext& ctx, char (&buf)[kTraceparentSize]) {
  // Written into a caller's fixed-size buffer: this runs for every proxied request.
  char* p = buf;
  std::memcpy(p, "00-", 3);
  p = writeHex(ctx.trace_id.bytes.data(), ctx.trace_id.bytes.size(), p + 3);
  *p++ = '-';
  p = writeHex(ctx.span_id.bytes.data(), ctx.span_id.bytes.size(), p);
  *p++ = '-';
  writeHex(&ctx.flags, 1, p);
  return {buf, sizeof buf};
}

namespace {

// `list` holds `members` valid members joined by ',' and is longer than 512 characters.
void truncateTracestate(std::string& list, size_t members) {
  std::array<std::string_view, kMaxTracestateMembers> all;
  std::array<bool, kMaxTracestateMembers> keep;
  std::string_view rest = list;
  for (size_t i = 0; i < members; ++i) {
    const size_t comma = rest.find(',');
    all[i] = rest.substr(0, comma);
    keep[i] = true;
    rest.remove_prefix(comma == std::string_view::npos ? rest.size() : comma + 1);
  }
  // Each kept member counts with one comma: one more than the joined length.
  size_t length_and_comma = list.size() + 1;
  auto tooLong = [&] { return length_and_comma > kMaxTracestateChars + 1; };
  auto drop = [&](size_t i) {
    keep[i] = false;
    length_and_comma -= all[i].size() + 1;
  };
  for (size_t i = members; i-- > 0 && tooLong();) {
    if (all[i].size() > kMaxTracestateMemberChars) {
      drop(i);
    }
  }
  for (size_t i = members; i-- > 0 && tooLong();) {
    if (keep[i]) {
      drop(i);
    }
  }
  std::string out;
  for (size_t i = 0; i < members; ++i) {
    if (keep[i]) {
      if (!out.empty()) {
        out += ',';
      }
      out.append(all[i]);
    }
  }
  list = std::move(out);
}

}  // namespace

// Returns the list re-joined without OWS and empty members. Any invalid member or duplicate key
// drops the whole header (a vendor's entry must never be silently altered). More than 32 members
// also drops it: the spec allows truncation, but which members to keep is vendor knowledge we lack,
// and the W3C test suite expects a 33-member header to be discarded.
std::optional<std::string> sanitizeTracestate(std::string_view value) {
  std::string out;
  size_t members = 0;
  std::array<std::string_view, kMaxTracestateMembers> keys;
  bool ok = forEachListMember(value, [&](std::string_view member) {
    member = trimOws(member);
    if (member.empty()) {
      return true;
    }
    size_t eq = member.find('=');
    if (eq == std::string_view::npos) {
      return false;
    }
    std::string_view key = member.substr(0, eq);
    if (!validTracestateKey(key) || !validTracestateValue(member.substr(eq + 1))) {
      return false;
    }
    if (members == kMaxTracestateMembers ||
        std::find(keys.begin(), keys.begin() + members, key) != keys.begin() + members) {
      return false;
    }
    keys[members++] = key;
    if (!out.empty()) {
      out += ',';
    }
    out.append(member);
    return true;
  });
  if (!ok) {
    return std::nullopt;
  }
  if (out.size() > kMaxTracestateChars) {
    truncateTracestate(out, members);
  }
  return out;
}

// {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]. The sampling-only forms ("0", "1", "d")
// carry no ids, so they yield no context: "b3: 0" (deny) then starts a new trace that the sampler
// decides on, rather than forcing the request unsampled.
std::optional<SpanContext> parseB3Single(std::string_view value) {
  std::array<std::string_view, 4> parts;
  size_t n = 0;
  while (true) {
    if (n == parts.size()) {
      return std::nullopt;
    }
    size_t dash = value.find('-');
    parts[n++] = value.substr(0, dash);
    if (dash == std::string_view::npos) {
      break;
    }
    value.remove_prefix(dash + 1);
  }
  if (n < 2) {
    return std::nullopt;
  }
  if ((parts[0].size() != 16 && parts[0].size() != 32) || parts[1].size() != 16) {
    return std::nullopt;
  }
  SpanContext ctx;
  ctx.trace_id = parseB3TraceId(parts[0]);
  ctx.span_id = SpanId::fromHex(parts[1]);
  if (!ctx.valid()) {
    return std::nullopt;
  }
  if (n >= 3) {
    if (parts[2] == "1" || parts[2] == "d") {
      ctx.flags = kFlagSampled;
      ctx.debug = parts[2] == "d";
    } else if (parts[2] != "0") {
      return std::nullopt;
    }
  }
  if (n == 4 && !SpanId::fromHex(parts[3]).valid()) {
    return std::nullopt;
  }
  ctx.remote = true;
  return ctx;
}

std::optional<std::string> sanitizeBaggage(std::string_view header_value) {
  if (header_value.size() > kMaxBaggageBytes) {
    return std::nullopt;
  }
  size_t members = 0;
  bool ok = forEachListMember(header_value, [&](std::string_view member) {
    return ++members <= kMaxBaggageMembers && validBaggageMember(member);
  });
  if (!ok) {
    return std::nullopt;
  }
  return std::string(header_value);
}

std::unique_ptr<Propagator> makeTraceContextPropagator() {
  return std::make_unique<TraceContextPropagator>();
}

std::unique_ptr<Propagator> makeB3Propagator(bool inject_multi_header) {
  return std::make_unique<B3Propagator>(inject_multi_header);
}

CompositePropagator::CompositePropagator(const std::vector<std::string>& names) {
  for (const auto& name : names) {
    if (name == "tracecontext") {
      propagators_.push_back(makeTraceContextPropagator());
    } else if (name == "b3") {
      propagators_.push_back(makeB3Propagator(false));
    } else if (name == "b3multi") {
      propagators_.push_back(makeB3Propagator(true));
    } else if (name == "baggage") {
      baggage_ = true;
    } else if (name != "none") {
      throw std::invalid_argument("unknown propagator: " + name);
    }
  }
}

std::optional<SpanContext> CompositePropagator::extract(const HeaderCarrier& carrier) const {
  std::optional<SpanContext> ctx;
  for (const auto& p : propagators_) {
    if (!ctx) {
      ctx = p->extract(carrier);
      continue;
    }
    // inject() writes every format, so the next hop finds the same span in each: what the winning
    // format cannot carry (B3's debug flag, W3C's tracestate and random flag) is taken from the
    // others, or it would be lost one hop later.
    auto other = p->extract(carrier);
    if (!other || other->trace_id != ctx->trace_id || other->span_id != ctx->span_id) {
      continue;
    }
    if (other->debug) {
      ctx->debug = true;
      ctx->flags |= kFlagSampled;  // debug implies sampled
    }
    ctx->flags |= other->flags & kFlagRandom;
    if (ctx->tracestate.empty()) {
      ctx->tracestate = std::move(other->tracestate);
    }
  }
  return ctx;
}

void CompositePropagator::inject(const SpanContext& ctx, HeaderCarrier& carrier) const {
  for (const auto& p : propagators_) {
    p->inject(ctx, carrier);
  }
}

void CompositePropagator::sanitize(HeaderCarrier& carrier) const {
  if (!baggage_) {
    return;
  }
  // The limits apply to the combined list; valid lines pass on as they came.
  std::string scratch;
  if (auto value = carrier.getList(kBaggage, scratch); value && !sanitizeBaggage(*value)) {
    carrier.remove(kBaggage);
  }
}

}  // namespace sidetrace::tracing
