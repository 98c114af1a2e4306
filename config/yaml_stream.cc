// Splitting a YAML stream into documents, and writing a rewritten document back so that it reads
// as it did. yaml-cpp's own Emitter << Node drops the "!" tag of quoted scalars and writes `"100"`
// as 100, `"NO"` as NO (a YAML 1.1 bool to kubectl): hence the walk below.

#include "config/yaml_stream.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "config/checks.h"
#include "config/load.h"

namespace sidetrace::config::detail {

namespace {

constexpr int kMaxDepth = 200;  // aliases can make a tree that never ends; real ones are < 20
const std::string kCoreTagPrefix = "tag:yaml.org,2002:";

std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    lines.push_back(text.substr(start, end - start));
    start = end;
  }
  return lines;
}

// The line without its line break (\n or \r\n).
std::string_view stripBreak(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
    line.remove_suffix(1);
  }
  return line;
}

bool isMarker(std::string_view line, std::string_view marker) {
  line = stripBreak(line);
  return line.substr(0, 3) == marker && (line.size() == 3 || line[3] == ' ' || line[3] == '\t');
}

// What follows `---` on its line: empty or a comment means the content starts below.
bool markerHasContent(std::string_view line) {
  std::string rest = trim(stripBreak(line).substr(3));
  return !rest.empty() && rest[0] != '#';
}

bool isBlankOrComment(std::string_view line) {
  std::string t = trim(stripBreak(line));
  return t.empty() || t[0] == '#';
}

bool isTopLevelCommentOrBlank(std::string_view line) {
  return !line.empty() && (line[0] == '#' || trim(stripBreak(line)).empty());
}

// ---- emitting ------------------------------------------------------------------------------

// Would this text, written plain, read as something other than a string to a YAML 1.1 or 1.2
// reader (go-yaml behind kubectl is 1.1: NO, on, 0777, 23:59, 1_000 are not strings there)?
// Erring towards quotes is harmless: a quoted scalar is always a string.
bool plainIsNotString(const std::string& s) {
  static constexpr std::array<std::string_view, 16> kWords = {
      "y",    "n", "yes", "no", "true", "false", "on",    "off",
      "null", "~", "<<",  "=",  ".inf", "-.inf", "+.inf", ".nan"};
  std::string lower = toLower(s);
  if (s.empty() || std::find(kWords.begin(), kWords.end(), lower) != kWords.end()) {
    return true;
  }
  // Numbers in any base, sexagesimal, timestamps: a digit first (after a sign or dot), then only
  // what those spellings use. "100m" and "64Mi" (Kubernetes quantities) are strings plain.
  size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  i += i < s.size() && s[i] == '.' ? 1 : 0;
  return i < s.size() && s[i] >= '0' && s[i] <= '9' &&
         s.find_first_not_of("0123456789_.:+- abcdefABCDEFxXoOtTzZ") == std::string::npos;
}

// yaml-cpp quotes on its own what it cannot write plain, and more in flow collections ("a, b").
bool yamlCppQuotes(const std::string& s) {
  YAML::Emitter e;
  e << YAML::Flow << YAML::BeginSeq << s << YAML::EndSeq;
  return std::string_view(e.c_str()) != "[" + s + "]";
}

void emitTag(YAML::Emitter& out, const std::string& tag) {
  if (tag.rfind(kCoreTagPrefix, 0) == 0) {
    out << YAML::SecondaryTag(tag.substr(kCoreTagPrefix.size()));
  } else if (tag.size() > 1 && tag[0] == '!') {
    out << YAML::LocalTag(tag.substr(1));
  } else {
    out << YAML::VerbatimTag(tag);
  }
}

// A scalar's tag as read back: "!" (quoted), "?" (plain) or an explicit one. Scalars made in
// code without a tag (yaml-cpp's `node["key"] = "text"`) are strings, quoted when they must be.
std::string effectiveTag(const YAML::Node& n) {
  const std::string& t = n.Tag();
  if (t.empty() && n.IsScalar()) {
    return plainIsNotString(n.Scalar()) || yamlCppQuotes(n.Scalar()) ? "!" : "?";
  }
  return t;
}

bool hasExplicitTag(const YAML::Node& n) {
  const std::string& t = n.Tag();
  return !t.empty() && t != "?" && t != "!";
}

// yaml-cpp writes a literal block with "clip" chomping and no indentation indicator: right only
// for text that ends in exactly one line break and does not start with a blank.
bool literalFits(const std::string& v) {
  if (v.size() < 2 || v.back() != '\n' || v[v.size() - 2] == '\n' || v[0] == ' ' || v[0] == '\t' ||
      v[0] == '\n') {
    return false;
  }
  return std::none_of(v.begin(), v.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\n' && c != '\t') || u == 0x7f;
  });
}

void emitNode(YAML::Emitter& out, const YAML::Node& n, bool in_flow, bool allow_literal, int depth);

void emitScalar(YAML::Emitter& out, const YAML::Node& n, bool in_flow, bool allow_literal) {
  const std::string& v = n.Scalar();
  if (effectiveTag(n) == "!") {
    if (allow_literal && !in_flow && literalFits(v)) {
      out << YAML::Literal << v;
    } else {
      out << YAML::DoubleQuoted << v;
    }
    return;
  }
  if (hasExplicitTag(n)) {
    emitTag(out, n.Tag());
  }
  out << v;
}

void emitNode(YAML::Emitter& out, const YAML::Node& n, bool in_flow, bool allow_literal,
              int depth) {
  if (depth > kMaxDepth) {
    throw ConfigError("nested deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      emitScalar(out, n, in_flow, allow_literal);
      return;
    case YAML::NodeType::Sequence:
    case YAML::NodeType::Map: {
      // Empty collections as [] / {}: yaml-cpp writes a block one on a line of its own.
      bool flow = in_flow || n.Style() == YAML::EmitterStyle::Flow || n.size() == 0;
      if (hasExplicitTag(n)) {
        emitTag(out, n.Tag());
      }
      if (flow) {
        out << YAML::Flow;
      }
      if (n.IsSequence()) {
        out << YAML::BeginSeq;
        for (const auto& item : n) {
          emitNode(out, item, flow, allow_literal, depth + 1);
        }
        out << YAML::EndSeq;
      } else {
        out << YAML::BeginMap;
        for (const auto& kv : n) {
          out << YAML::Key;
          emitNode(out, kv.first, flow, allow_literal, depth + 1);
          out << YAML::Value;
          emitNode(out, kv.second, flow, allow_literal, depth + 1);
        }
        out << YAML::EndMap;
      }
      return;
    }
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      out << YAML::Null;
      return;
  }
}

std::string tagClass(const YAML::Node& n) {
  std::string t = effectiveTag(n);
  if (t.empty() || t == "?" || (t == "!" && !n.IsScalar())) {
    return "?";  // a non-specific tag on a collection resolves to map/seq either way
  }
  return t;
}

bool same(const YAML::Node& a, const YAML::Node& b, int depth) {
  if (depth > kMaxDepth || a.Type() != b.Type() || tagClass(a) != tagClass(b)) {
    return false;
  }
  switch (a.Type()) {
    case YAML::NodeType::Scalar:
      return a.Scalar() == b.Scalar();
    case YAML::NodeType::Sequence:
    case YAML::NodeType::Map: {
      if (a.size() != b.size()) {
        return false;
      }
      auto ib = b.begin();
      for (auto ia = a.begin(); ia != a.end(); ++ia, ++ib) {
        bool ok = a.IsSequence() ? same(*ia, *ib, depth + 1)
                                 : same(ia->first, ib->first, depth + 1) &&
                                       same(ia->second, ib->second, depth + 1);
        if (!ok) {
          return false;
        }
      }
      return true;
    }
    default:
      return true;
  }
}

}  // namespace

std::vector<YamlDocument> splitYamlStream(const std::string& stream) {
  std::vector<YamlDocument> docs;
  YamlDocument cur;
  bool has_marker = false;
  bool has_content = false;
  int line_no = 0;
  auto finish = [&](int next_first_line) {
    if (!cur.text.empty()) {
      docs.push_back(std::move(cur));
    }
    cur = YamlDocument{};
    cur.first_line = next_first_line;
    has_marker = false;
    has_content = false;
  };
  for (std::string_view line : splitLines(stream)) {
    ++line_no;
    if (isMarker(line, "---")) {
      if (has_marker || has_content) {
        finish(line_no);
      }
      has_marker = true;
      has_content = markerHasContent(line);
      cur.text += line;
      continue;
    }
    cur.text += line;
    if (isMarker(line, "...")) {
      finish(line_no + 1);
      continue;
    }
    bool directive = line[0] == '%' && !has_marker && !has_content;
    if (!directive && !isBlankOrComment(line)) {
      has_content = true;
    }
  }
  finish(line_no + 1);
  return docs;
}

YAML::Node parseYamlDocument(const YamlDocument& doc, const std::string& source) {
  try {
    return YAML::Load(doc.text);
  } catch (const YAML::Exception& e) {
    std::string where = source + ":";
    if (e.mark.is_null()) {
      where += std::to_string(doc.first_line);
    } else {
      where +=
          std::to_string(doc.first_line + e.mark.line) + ":" + std::to_string(e.mark.column + 1);
    }
    throw ConfigError(where + ": " + e.msg);
  }
}

std::string emitYaml(const YAML::Node& root, bool allow_literal) {
  YAML::Emitter out;
  out.SetIndent(2);
  emitNode(out, root, false, allow_literal, 0);
  if (!out.good()) {
    throw ConfigError("cannot write YAML: " + out.GetLastError());
  }
  return out.c_str();
}

std::string reemitYamlDocument(const YamlDocument& doc, const YAML::Node& root,
                               const std::string& source) {
  std::vector<std::string_view> lines = splitLines(doc.text);
  std::string head;
  size_t first = 0;
  bool marker_seen = false;
  for (; first < lines.size(); ++first) {
    std::string_view line = lines[first];
    if (!marker_seen && isMarker(line, "---")) {
      marker_seen = true;
      if (markerHasContent(line)) {
        head += "---\n";  // the content starting on the marker line is emitted below it
        ++first;
        break;
      }
    } else if (!isBlankOrComment(line) && !(line[0] == '%' && !marker_seen)) {
      break;
    }
    head += line;
  }
  size_t last = lines.size();
  while (last > first &&
         (isTopLevelCommentOrBlank(lines[last - 1]) || isMarker(lines[last - 1], "..."))) {
    --last;
  }
  std::string tail;
  for (size_t i = last; i < lines.size(); ++i) {
    tail += lines[i];
  }
  // The literal block form is the readable one for embedded files; should yaml-cpp write one
  // that reads back differently, every such scalar is double-quoted instead.
  for (bool allow_literal : {true, false}) {
    std::string body = emitYaml(root, allow_literal);
    YAML::Node back;
    try {
      back = YAML::Load(body);
    } catch (const YAML::Exception&) {
      continue;
    }
    if (same(root, back, 0)) {
      return head + body + "\n" + tail;
    }
  }
  throw ConfigError(source + ":" + std::to_string(doc.first_line) +
                    ": yaml-cpp cannot write this document back with the same meaning");
}

YAML::Node yamlString(const std::string& text) {
  YAML::Node n(text);
  n.SetTag(plainIsNotString(text) || yamlCppQuotes(text) ? "!" : "?");
  return n;
}

YAML::Node yamlInt(long long value) {
  YAML::Node n(std::to_string(value));
  n.SetTag("?");
  return n;
}

YAML::Node yamlBool(bool value) {
  YAML::Node n(value ? "true" : "false");
  n.SetTag("?");
  return n;
}

bool sameYamlMeaning(const YAML::Node& a, const YAML::Node& b) {
  return same(a, b, 0);
}

}  // namespace sidetrace::config::detail
