#pragma once

// Schema-checking helpers over document nodes (node.h: YAML or JSON), private to remora_config.
// They turn "read key X as type T" into either a value or an error at the right line:column, so the
// parser itself reads as a list of keys.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "node.h"
#include "remora/config/config.h"

namespace remora::config::detail {

// Collects the errors of one document, turning yaml-cpp's 0-based marks into 1-based locations.
class ErrorSink {
 public:
  ErrorSink(std::string_view file, std::vector<ConfigError>& errors)
      : file_(file), errors_(errors) {}

  SourceLoc loc(const YAML::Mark& mark) const;
  SourceLoc loc(const Node& node) const { return loc(node.mark()); }
  void add(SourceLoc loc, std::string reason);
  void add(const Node& node, std::string reason) { add(loc(node), std::move(reason)); }
  void add(const YAML::Mark& mark, std::string reason) { add(loc(mark), std::move(reason)); }
  size_t count() const { return errors_.size(); }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::vector<ConfigError>& errors_;
};

// "a map", "a list", "nothing (null)" or the quoted scalar, for "must be X, got Y" messages.
std::string describe(const Node& node);
// `s` in double quotes, with control characters escaped so a message stays on one line.
std::string quote(std::string_view s);
// "a, b, c".
std::string join(const std::vector<std::string>& items);
// The closest candidate within a small edit distance, or "" when nothing is close.
std::string closest(std::string_view word, const std::vector<std::string>& candidates);

// HTTP tokens (RFC 9110 5.6.2), for header names and methods.
bool isToken(std::string_view s);
std::string toLower(std::string_view s);
std::string toUpper(std::string_view s);

// One key of a map, as written.
struct Field {
  std::string key;
  Node key_node;
  Node value;
};

// A single scalar read out of a node. `what` names the value in messages ("workers" or
// "retriable_status_codes entry"). Each returns false, after reporting, when the node is not what
// was asked for; `where` is the location to report at.
bool readString(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
                std::string& out, bool allow_empty);
bool readUint(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
              uint64_t min, uint64_t max, uint64_t& out);
bool readDouble(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
                double min, double max, double& out);
bool readDuration(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
                  bool allow_zero, Duration& out);
bool readAddress(ErrorSink& sink, const Node& node, SourceLoc where, std::string_view what,
                 Address& out);

// A map node whose keys were checked against the keys allowed in `what` ("cluster", "retry"...).
// Unknown and repeated keys are reported once, at construction. The read*() members leave `out`
// untouched when the key is absent or its value is invalid, so defaults survive, and return true
// only when the key was present and valid.
class MapReader {
 public:
  MapReader(ErrorSink& sink, const Node& node, std::string_view what,
            std::initializer_list<std::string_view> allowed);

  bool ok() const { return ok_; }
  const Node& node() const { return node_; }
  SourceLoc loc() const { return sink_.loc(node_); }
  const Field* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Where to report a problem with the value of `field`. yaml-cpp gives a null value the mark of
  // the token after it (often the next line), so a missing value is reported at its key.
  SourceLoc valueLoc(const Field& field) const;
  SourceLoc keyLoc(const Field& field) const { return sink_.loc(field.key_node); }

  // Reports `missing required key "k" in <what>` at the map when `key` is absent.
  bool require(std::string_view key);

  bool readString(std::string_view key, std::string& out, bool allow_empty = false);
  bool readUint32(std::string_view key, uint32_t& out, uint32_t min = 0,
                  uint32_t max = std::numeric_limits<uint32_t>::max());
  bool readUint16(std::string_view key, uint16_t& out, uint16_t min, uint16_t max);
  bool readDouble(std::string_view key, double& out, double min, double max);
  bool readDuration(std::string_view key, Duration& out, bool allow_zero = true);
  bool readAddress(std::string_view key, Address& out, SourceLoc* loc = nullptr);
  // A list value; reports "must be a list" otherwise. Returns nullptr when absent or not a list.
  const Field* list(std::string_view key);
  // A map value; reports "must be a map" otherwise. Returns nullptr when absent or not a map.
  const Field* map(std::string_view key);

  ErrorSink& sink() { return sink_; }
  const std::string& what() const { return what_; }

 private:
  ErrorSink& sink_;
  Node node_;
  std::string what_;
  std::vector<Field> fields_;
  bool ok_ = false;
};

}  // namespace remora::config::detail
