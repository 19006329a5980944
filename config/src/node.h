#pragma once

// A read-only view of one node of a config document, whatever it was written in: a yaml-cpp node
// (a config file, a policy sent to the control plane as JSON or YAML text) or an nlohmann::json
// value (a cluster of a discovery snapshot: the proxy parses the snapshot as JSON once and reads
// the clusters from that tree; dumping them to text for yaml-cpp to parse again cost most of a
// push's CPU). The parser reads every document through this view, so both kinds go through the
// same rules and produce the same messages. Private to remora_config.
//
// JSON scalars read as the text yaml-cpp sees for the same JSON: 5 -> "5", 0.5 -> "0.5",
// true -> "true", "5" -> "5"; null is a null node. So `"weight": 5` in a snapshot and `weight: 5`
// in a file are one and the same to the validator.
//
// JSON has no positions: a JSON node's mark is unknown (line -1), and errors about it carry only
// the document's name.
//
// A view of JSON does not own the tree: the nlohmann::json value must outlive every view of it
// and every view derived from it. Views of YAML share ownership of yaml-cpp's nodes.

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace remora::config::detail {

class Node {
 public:
  enum class Kind { Null, Scalar, Sequence, Map };

  // A null node without a position.
  Node() = default;
  explicit Node(const YAML::Node& node);
  explicit Node(const nlohmann::json& json);

  Kind kind() const { return kind_; }
  bool isNull() const { return kind_ == Kind::Null; }
  bool isScalar() const { return kind_ == Kind::Scalar; }
  bool isSequence() const { return kind_ == Kind::Sequence; }
  bool isMap() const { return kind_ == Kind::Map; }

  // The text of a scalar; empty for anything else.
  const std::string& scalar() const;
  // Elements of a sequence, entries of a map; 0 otherwise.
  size_t size() const;
  // The elements of a sequence (empty for anything else).
  std::vector<Node> elements() const;
  // The (key, value) entries of a map in document order (JSON: key order; empty for anything
  // else).
  std::vector<std::pair<Node, Node>> entries() const;
  // Where the node starts (yaml-cpp's 0-based mark); line -1 when unknown (JSON).
  YAML::Mark mark() const;

 private:
  // A JSON object key: a string scalar that lives in the tree.
  static Node jsonKey(const std::string& key);

  Kind kind_ = Kind::Null;
  YAML::Node yaml_;                        // when read from YAML
  const nlohmann::json* json_ = nullptr;   // when read from JSON
  const std::string* json_key_ = nullptr;  // when a JSON object key
  std::string number_text_;                // a JSON number or boolean, as text
  bool from_yaml_ = false;
};

}  // namespace remora::config::detail
