#include "config/yaml_stream.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/config/env_map.h"

namespace sidetrace::config::detail {
namespace {

using testing::errorOf;

std::vector<std::string> texts(const std::string& stream) {
  std::vector<std::string> out;
  std::string joined;
  for (const auto& d : splitYamlStream(stream)) {
    out.push_back(d.text);
    joined += d.text;
  }
  EXPECT_EQ(joined, stream) << "the documents must add up to the stream";
  return out;
}

TEST(YamlStream, SplitsAtMarkersAndKeepsEveryByte) {
  EXPECT_TRUE(texts("").empty());
  EXPECT_EQ(texts("a: 1\n"), std::vector<std::string>{"a: 1\n"});
  EXPECT_EQ(texts("a: 1\n---\nb: 2"), (std::vector<std::string>{"a: 1\n", "---\nb: 2"}));
  // Comments before the first marker belong to its document; a bare marker is a document.
  EXPECT_EQ(texts("# head\n---\na: 1\n---\n---\nb: 2\n"),
            (std::vector<std::string>{"# head\n---\na: 1\n", "---\n", "---\nb: 2\n"}));
  // "..." ends a document; directives stay with the document they announce.
  EXPECT_EQ(texts("a: 1\n...\n%YAML 1.2\n---\nb: 2\n"),
            (std::vector<std::string>{"a: 1\n...\n", "%YAML 1.2\n---\nb: 2\n"}));
  // Indented, or followed by other text, "---" is content; "--- # c" and "--- {a: 1}" are markers.
  EXPECT_EQ(texts("a: |\n  ---\nb: ---x\n"), std::vector<std::string>{"a: |\n  ---\nb: ---x\n"});
  EXPECT_EQ(texts("a: 1\n--- # two\nb: 2\n--- {c: 3}\r\n"),
            (std::vector<std::string>{"a: 1\n", "--- # two\nb: 2\n", "--- {c: 3}\r\n"}));
  EXPECT_EQ(texts("# only a comment\n"), std::vector<std::string>{"# only a comment\n"});
}

TEST(YamlStream, FirstLineCountsInTheWholeStream) {
  auto docs = splitYamlStream("a: 1\nb: 2\n---\nc: 3\n---\n\nd: [\n");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].first_line, 1);
  EXPECT_EQ(docs[1].first_line, 3);
  EXPECT_EQ(docs[2].first_line, 5);
}

TEST(YamlStream, ParseErrorNamesTheLineInTheStream) {
  auto docs = splitYamlStream("a: 1\n---\nb: c\n  d: e\n");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(errorOf([&] { parseYamlDocument(docs[1], "app.yaml"); }),
            "app.yaml:4:4: illegal map value");
  EXPECT_TRUE(parseYamlDocument(splitYamlStream("---\n# nothing\n")[0], "x").IsNull());
}

// Each of these, quoted, is a string; written plain, a YAML 1.1 or 1.2 reader (kubectl's go-yaml
// is 1.1) takes most of them for a number, bool, null or timestamp.
const std::vector<std::string> kAmbiguous = {"100",        "NO",
                                             "23:59",      "007",
                                             "true",       "1e3",
                                             "0x1F",       "~",
                                             "null",       "",
                                             "yes",        "on",
                                             "Off",        "y",
                                             ".inf",       "-.5",
                                             "1_000",      "0o17",
                                             "1.4.2",      "+1",
                                             "2001-12-14", "2001-12-14t21:59:43.10-05:00",
                                             "=",          "<<",
                                             "-1"};

TEST(YamlStream, QuotedScalarsStayQuotedWhenRewritten) {
  std::string doc = "# header\nkind: ConfigMap\ndata:\n";
  for (size_t i = 0; i < kAmbiguous.size(); ++i) {
    doc += "  k" + std::to_string(i) + ": \"" + kAmbiguous[i] + "\"   # comment\n";
  }
  doc += "  plain_int: 100\n  plain_bool: true\n  plain_null: ~\n  empty:\n";
  auto docs = splitYamlStream(doc);
  YAML::Node root = parseYamlDocument(docs[0], "t");
  root["added"] = yamlString("x");
  std::string out = reemitYamlDocument(docs[0], root, "t");
  EXPECT_EQ(out.rfind("# header\nkind: ConfigMap\n", 0), 0u) << out;
  YAML::Node back = YAML::Load(out);
  EXPECT_TRUE(sameYamlMeaning(root, back)) << out;
  for (size_t i = 0; i < kAmbiguous.size(); ++i) {
    YAML::Node v = back["data"]["k" + std::to_string(i)];
    EXPECT_EQ(v.Tag(), "!") << kAmbiguous[i] << " lost its quotes:\n" << out;
    EXPECT_EQ(v.Scalar(), kAmbiguous[i]);
  }
  EXPECT_EQ(back["data"]["plain_int"].Tag(), "?");
  EXPECT_EQ(back["data"]["plain_bool"].Scalar(), "true");
  EXPECT_TRUE(back["data"]["plain_null"].IsNull());
  EXPECT_TRUE(back["data"]["empty"].IsNull());
  EXPECT_EQ(out.find("# comment"), std::string::npos) << "yaml-cpp keeps no inner comments";
}

TEST(YamlStream, BlockScalarsFlowCollectionsAndTagsReadBackTheSame) {
  const std::string doc = R"(--- # marker comment
kind: ConfigMap
data:
  script: |
    #!/bin/sh
    echo "hi"   # not a comment

    exit 0
  strip: |-
    no final newline
  keep: |+
    two final newlines

  indented: |2
      starts with blanks
    then less
  folded: >
    folded
    text
  single: 'it''s'
  escapes: "tab\there\u00e9\x01"
  unicode: héllo ✓
  flow: {a: [1, "2", {b: c}], d: []}
  empty_map: {}
  tagged: !!str 5
  binary: !!binary aGk=
  custom: !thing x
  nested:
    - - 1
      - 2
    - {x: y}
  "on": quoted key
  ? complex key
  : v
# trailing comment
...
)";
  auto docs = splitYamlStream(doc);
  ASSERT_EQ(docs.size(), 1u);
  YAML::Node root = parseYamlDocument(docs[0], "t");
  std::string out = reemitYamlDocument(docs[0], root, "t");
  EXPECT_EQ(out.rfind("--- # marker comment\n", 0), 0u) << out;
  EXPECT_NE(out.find("\n# trailing comment\n...\n"), std::string::npos) << out;
  YAML::Node back = YAML::Load(out);
  EXPECT_TRUE(sameYamlMeaning(root, back)) << out;
  EXPECT_EQ(back["data"]["keep"].Scalar(), "two final newlines\n\n");
  EXPECT_EQ(back["data"]["indented"].Scalar(), "  starts with blanks\nthen less\n");
  EXPECT_EQ(back["data"]["script"].Scalar(),
            "#!/bin/sh\necho \"hi\"   # not a comment\n\nexit 0\n");
  EXPECT_NE(out.find("  script: |\n"), std::string::npos) << "multi-line text stays readable";
  EXPECT_EQ(back["data"]["tagged"].Tag(), "tag:yaml.org,2002:str");
  EXPECT_EQ(back["data"]["custom"].Tag(), "!thing");
  EXPECT_EQ(back["data"]["flow"]["a"][1].Tag(), "!");
  EXPECT_NE(out.find("flow: {a: [1, \"2\", {b: c}], d: []}"), std::string::npos) << out;
}

TEST(YamlStream, MarkerWithContentIsRewrittenOnItsOwnLine) {
  auto docs = splitYamlStream("a: 1\n--- {b: 2}\n");
  YAML::Node root = parseYamlDocument(docs[1], "t");
  EXPECT_EQ(reemitYamlDocument(docs[1], root, "t"), "---\n{b: 2}\n");
}

TEST(YamlStream, StringsMadeInCodeAreQuotedWhenPlainWouldNotBeAString) {
  for (const std::string& s : kAmbiguous) {
    EXPECT_EQ(yamlString(s).Tag(), "!") << s;
  }
  for (std::string s : {"--listen=0.0.0.0:15001", "100m", "64Mi", "sidetrace:0.1.0", "/ready",
                        "metadata.name", "$(POD_NAME)"}) {
    EXPECT_EQ(yamlString(s).Tag(), "?") << s;
  }
  // Plain in a block, but not in a flow collection: quoted, so that both read back a string.
  EXPECT_EQ(yamlString("metadata.labels['a']").Tag(), "!");
  EXPECT_EQ(yamlString("a=1,b=2").Tag(), "!");
  EXPECT_EQ(yamlString("a: b").Tag(), "!");
  EXPECT_EQ(yamlString("#x").Tag(), "!");
  YAML::Node m(YAML::NodeType::Map);
  m["port"] = yamlInt(8080);
  m["on"] = yamlBool(true);
  m["s"] = yamlString("8080");
  EXPECT_EQ(emitYaml(m), "port: 8080\n\"on\": true\ns: \"8080\"");
}

TEST(YamlStream, SameMeaningTellsQuotedFromPlain) {
  EXPECT_TRUE(sameYamlMeaning(YAML::Load("{a: \"1\", b: [x]}"), YAML::Load("a: '1'\nb:\n - x")));
  EXPECT_FALSE(sameYamlMeaning(YAML::Load("a: \"1\""), YAML::Load("a: 1")));
  EXPECT_FALSE(sameYamlMeaning(YAML::Load("{a: 1, b: 2}"), YAML::Load("{b: 2, a: 1}")));
  EXPECT_FALSE(sameYamlMeaning(YAML::Load("a: ~"), YAML::Load("a: '~'")));
}

}  // namespace
}  // namespace sidetrace::config::detail
