#include "node.h"

#include <nlohmann/json.hpp>

namespace remora::config::detail {

namespace {

const std::string& emptyString() {
  static const std::string empty;
  return empty;
}

}  // namespace

Node::Node(const YAML::Node& node) : yaml_(node), from_yaml_(true) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      kind_ = Kind::Scalar;
      break;
    case YAML::NodeType::Sequence:
      kind_ = Kind::Sequence;
      break;
    case YAML::NodeType::Map:
      kind_ = Kind::Map;
      break;
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      kind_ = Kind::Null;
      break;
  }
}

Node::Node(const nlohmann::json& json) : json_(&json) {
  switch (json.type()) {
    case nlohmann::json::value_t::object:
      kind_ = Kind::Map;
      break;
    case nlohmann::json::value_t::array:
      kind_ = Kind::Sequence;
      break;
    case nlohmann::json::value_t::string:
      kind_ = Kind::Scalar;
      break;
    case nlohmann::json::value_t::boolean:
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float:
      // The text the same value has in the JSON that yaml-cpp would read.
      kind_ = Kind::Scalar;
      number_text_ = json.dump();
      break;
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::binary:
    case nlohmann::json::value_t::discarded:
      kind_ = Kind::Null;
      break;
  }
}

Node Node::jsonKey(const std::string& key) {
  Node n;
  n.kind_ = Kind::Scalar;
  n.json_key_ = &key;
  return n;
}

const std::string& Node::scalar() const {
  if (kind_ != Kind::Scalar) return emptyString();
  if (from_yaml_) return yaml_.Scalar();
  if (json_key_ != nullptr) return *json_key_;
  if (json_->is_string()) return json_->get_ref<const std::string&>();
  return number_text_;
}

size_t Node::size() const {
  if (kind_ != Kind::Sequence && kind_ != Kind::Map) return 0;
  return from_yaml_ ? yaml_.size() : json_->size();
}

std::vector<Node> Node::elements() const {
  std::vector<Node> out;
  if (kind_ != Kind::Sequence) return out;
  out.reserve(size());
  if (from_yaml_) {
    for (const YAML::Node& item : yaml_) out.emplace_back(item);
  } else {
    for (const nlohmann::json& item : *json_) out.emplace_back(item);
  }
  return out;
}

std::vector<std::pair<Node, Node>> Node::entries() const {
  std::vector<std::pair<Node, Node>> out;
  if (kind_ != Kind::Map) return out;
  out.reserve(size());
  if (from_yaml_) {
    for (auto it = yaml_.begin(); it != yaml_.end(); ++it) {
      out.emplace_back(Node(it->first), Node(it->second));
    }
  } else {
    for (auto it = json_->begin(); it != json_->end(); ++it) {
      out.emplace_back(jsonKey(it.key()), Node(it.value()));
    }
  }
  return out;
}

YAML::Mark Node::mark() const { return from_yaml_ ? yaml_.Mark() : YAML::Mark::null_mark(); }

}  // namespace remora::config::detail
