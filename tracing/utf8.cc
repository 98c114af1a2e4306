#include "tracing/utf8.h"

#include <cstdint>
#include <cstring>

namespace sidetrace::tracing {

namespace {

// Length of the well-formed sequence starting at s[i] (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF), or 0 if the byte there starts none.
size_t sequenceLength(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  auto cont = [&](size_t k, uint8_t lo = 0x80, uint8_t hi = 0xbf) {
    return k < s.size() && b(k) >= lo && b(k) <= hi;
  };
  uint8_t c = b(i);
  if (c < 0x80) {
    return 1;
  }
  if (c >= 0xc2 && c <= 0xdf) {
    return cont(i + 1) ? 2 : 0;
  }
  if (c >= 0xe0 && c <= 0xef) {
    uint8_t lo = c == 0xe0 ? 0xa0 : 0x80;
    uint8_t hi = c == 0xed ? 0x9f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    uint8_t lo = c == 0xf0 ? 0x90 : 0x80;
    uint8_t hi = c == 0xf4 ? 0x8f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

}  // namespace

bool isValidUtf8(std::string_view s) {
  // Almost every string here is ASCII: check 8 bytes at a time before walking sequences.
  size_t i = 0;
  while (i + 8 <= s.size()) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    if ((w & 0x8080808080808080ull) != 0) {
      break;
    }
    i += 8;
  }
  while (i < s.size()) {
    size_t n = sequenceLength(s, i);
    if (n == 0) {
      return false;
    }
    i += n;
  }
  return true;
}

void appendValidUtf8(std::string_view s, std::string& out) {
  for (size_t i = 0; i < s.size();) {
    size_t n = sequenceLength(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      i += 1;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
}

void appendJsonString(std::string& out, std::string_view s, bool html_safe) {
  out += '"';
  std::string valid;
  if (!isValidUtf8(s)) {
    appendValidUtf8(s, valid);
    s = valid;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 ||
            (html_safe && (c == '<' || c == '>' || c == '&'))) {
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::string_view truncateUtf8(std::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) {
    return s;
  }
  size_t cut = max_bytes;
  // Continuation bytes are 10xxxxxx; a character is at most 4 bytes, so back up at most 3.
  for (size_t i = 0; i < 3 && cut > 0 && (static_cast<uint8_t>(s[cut]) & 0xC0) == 0x80; ++i) {
    --cut;
  }
  if ((static_cast<uint8_t>(s[cut]) & 0xC0) == 0x80) {
    cut = max_bytes;  // not a character's tail (invalid input): any cut is as good
  }
  return s.substr(0, cut);
}

}  // namespace sidetrace::tracing
