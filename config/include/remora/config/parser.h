#pragma once

// The building blocks of loadFile()/loadString(), public so that the control plane (cluster
// policies arrive one at a time, as JSON, which yaml-cpp also parses) and the proxy (applying a
// discovery snapshot, read from its JSON tree) validate with exactly the same code as a config
// file.
//
//   pass 1: parseConfig()/parseCluster() turn nodes into structs and check each value on its own;
//   pass 2: validateReferences() checks what spans several objects (route -> cluster, duplicates).

#include <nlohmann/json_fwd.hpp>
#include <string_view>
#include <vector>

#include "remora/config/config.h"

namespace YAML {
class Node;
}

namespace remora::config {

// Pass 1 for one cluster (an element of `clusters:`). Appends every problem to `errors` and returns
// nullopt if there was any. `endpoints_required` is false when a control plane fills the endpoints
// in (a proxy with `control_plane:`, or a policy pushed to the control plane).
std::optional<Cluster> parseCluster(const YAML::Node& node, std::string_view file,
                                    std::vector<ConfigError>& errors, bool endpoints_required);
// The same for a cluster that arrived as JSON (a discovery snapshot), read straight from the
// tree: the same rules and the same messages as the YAML form. JSON has no positions, so errors
// carry only `file` ("control-plane: ..."). JSON scalars count as their text, as in YAML:
// "weight": 5 and "weight": "5" are both 5.
std::optional<Cluster> parseClusterJson(const nlohmann::json& node, std::string_view file,
                                        std::vector<ConfigError>& errors, bool endpoints_required);

// Pass 1 for a whole document. Never fails outright: what it could not parse is left at its
// default and reported in `errors`. `source_file` is left empty (loadFile() sets it).
Config parseConfig(const YAML::Node& root, std::string_view file, std::vector<ConfigError>& errors);

struct ReferenceCheckOptions {
  // A proxy whose routes name clusters that only its control plane defines would set this while
  // loading the file and check again, strictly, once the first snapshot arrived.
  bool allow_unknown_clusters = false;
};

// Pass 2: route and fallback clusters exist; cluster, listener and route names are unique; no two
// listeners (nor a listener and the admin API) share an address. Uses the SourceLocs kept on the
// structs, so it also works on a config whose clusters were replaced by a control-plane snapshot.
void validateReferences(const Config& config, std::vector<ConfigError>& errors,
                        const ReferenceCheckOptions& options = {});

// Orders errors by position in the file (pass 2 finds its problems after pass 1 has finished),
// keeping errors without a position last.
void sortErrors(std::vector<ConfigError>& errors);

}  // namespace remora::config
