#pragma once
// A multi-document YAML stream, for tools that rewrite some documents of a stream and must leave
// the others exactly as written (`sidetrace inject`). yaml-cpp parses and emits each document;
// what it cannot do is say where documents start and end, keep comments, or keep the quotes that
// make `"100"` or `"NO"` a string. So: the stream is split at its `---` / `...` lines here and an
// untouched document is copied byte for byte; a rewritten one is emitted from the tree with every
// scalar quoted that was quoted (yaml-cpp's tag "!") and checked to read back the same.
// Internal to config/; not part of the contract.

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace sidetrace::config::detail {

struct YamlDocument {
  std::string text;    // its bytes in the stream: marker line, comments and content
  int first_line = 1;  // 1-based line of text's first line in the stream
};

// Splits at lines that start with `---` or `...` followed by a blank or the line's end (YAML
// forbids such lines inside any scalar). Comments, blank lines and directives before the first
// `---` of a document belong to it. Concatenating the texts gives the stream back. Never throws.
std::vector<YamlDocument> splitYamlStream(const std::string& stream);

// Parses one document; a Null node when it has no content (only comments or a bare `---`).
// Throws ConfigError "SOURCE:LINE:COLUMN: message" with the line in the whole stream.
YAML::Node parseYamlDocument(const YamlDocument& doc, const std::string& source);

// The document's text with its content replaced by `root` emitted as YAML: the marker line and
// the comments before the content, and the unindented comments after it, are kept; comments
// inside the content are lost (yaml-cpp does not keep them). Throws ConfigError when the emitted
// text would not read back with the same meaning as `root` (sameYamlMeaning).
std::string reemitYamlDocument(const YamlDocument& doc, const YAML::Node& root,
                               const std::string& source);

// `root` as block YAML, no trailing newline. Flow collections stay flow; scalars tagged "!"
// (quoted in the input) come out double-quoted, or as a literal block when they are multi-line
// and one reads back identically (`allow_literal`); plain ones ("?") come out plain; untagged
// ones (made in code) are strings, quoted as yamlString() would.
std::string emitYaml(const YAML::Node& root, bool allow_literal = true);

// Scalars built in code: a string is tagged "!" (emitted quoted) when its plain form would read
// as something else under YAML 1.1 or 1.2 (a number, bool, null, timestamp...), else "?".
YAML::Node yamlString(const std::string& text);
YAML::Node yamlInt(long long value);  // plain
YAML::Node yamlBool(bool value);      // plain

// Same types, same scalar text, same quoting class (tag "!" vs plain vs an explicit tag), same
// keys in the same order. What "the meaning is intact" means for a rewritten document.
bool sameYamlMeaning(const YAML::Node& a, const YAML::Node& b);

}  // namespace sidetrace::config::detail
