// Every config a user may copy is valid: the ```yaml blocks of README.md and docs/*.md, the files
// in config/examples/ and every remora or remora-control config under deploy/.
//
// The convention for ```yaml blocks in Markdown (documented in docs/configuration.md):
//   - a block is a whole proxy config, checked with `remora --validate`;
//   - a block whose first line starts with `# remora-control` is a whole control-plane config,
//     checked with `remora-control --validate`;
//   - a block whose first line starts with `# snippet` is a fragment: it must be valid YAML.

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "deploy_util.h"

namespace remora::deploy_test {
namespace {

struct Block {
  std::string file;  // relative to the source dir
  int line = 0;      // of the opening fence
  std::string text;
};

std::vector<Block> yamlBlocks(const std::string& relative) {
  std::vector<Block> out;
  std::istringstream in(itest::readFile(sourcePath(relative)));
  std::string line;
  int n = 0;
  bool open = false;
  size_t fence_indent = 0;
  while (std::getline(in, line)) {
    ++n;
    const size_t indent = std::min(line.find_first_not_of(' '), line.size());
    const std::string body = line.substr(indent);
    if (!open) {
      if (body == "```yaml" || body == "```yml") {
        out.push_back({relative, n, ""});
        open = true;
        fence_indent = indent;
      }
      continue;
    }
    if (body == "```") {
      open = false;
      continue;
    }
    // A block inside a list item is indented like its fence; the YAML starts there.
    out.back().text += line.substr(std::min(indent, fence_indent)) + "\n";
  }
  EXPECT_FALSE(open) << relative << ": a ```yaml block is never closed";
  return out;
}

std::string firstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

std::vector<std::string> markdownFiles() {
  std::vector<std::string> files = {"README.md", "deploy/README.md"};
  for (const auto& p : filesUnder(sourcePath("docs"), {".md"})) {
    files.push_back(std::filesystem::relative(p, sourcePath("")).string());
  }
  return files;
}

TEST(DocsConfigsTest, EveryYamlBlockInTheDocsIsValid) {
  itest::TempDir tmp;
  int proxy = 0, control = 0, snippets = 0;
  for (const std::string& file : markdownFiles()) {
    for (const Block& b : yamlBlocks(file)) {
      const std::string where = file + ":" + std::to_string(b.line);
      SCOPED_TRACE(where);
      const std::string first = firstLine(b.text);
      if (first.rfind("# snippet", 0) == 0) {
        ++snippets;
        try {
          YAML::LoadAll(b.text);
        } catch (const YAML::Exception& e) {
          ADD_FAILURE() << where << ": the snippet is not valid YAML: " << e.what();
        }
        continue;
      }
      // Named after the block's place, so errors read docs_configuration.md-120.yaml:3:5.
      std::string name = where;
      for (char& c : name) {
        if (c == '/' || c == ':') c = c == '/' ? '_' : '-';
      }
      name += ".yaml";
      CommandResult r;
      if (first.rfind("# remora-control", 0) == 0) {
        ++control;
        r = validateControlConfig(tmp, name, b.text);
      } else {
        ++proxy;
        r = validateProxyConfig(tmp, name, b.text);
      }
      EXPECT_EQ(r.exit_code, 0) << where
                                << ": this ```yaml block is not a valid config (mark fragments "
                                   "with a first line \"# snippet\"):\n"
                                << r.output;
    }
  }
  std::cout << "[ info ] checked " << proxy << " proxy configs, " << control
            << " control-plane configs, " << snippets << " snippets\n";
  // The docs do have examples of each kind; zero means the extraction broke.
  EXPECT_GE(proxy, 4);
  EXPECT_GE(control, 1);
  EXPECT_GE(snippets, 5);
}

// Each YAML file under config/examples and deploy/ is one of these; a new file must be added.
enum class Kind { ProxyConfig, ControlConfig, ClusterPolicy, KubernetesManifests };

Kind kindOf(const std::string& relative) {
  const std::string name = std::filesystem::path(relative).filename().string();
  if (relative.rfind("deploy/kubernetes/", 0) == 0) return Kind::KubernetesManifests;
  if (relative.rfind("config/examples/", 0) == 0) return Kind::ProxyConfig;
  if (name.find("remora-control") != std::string::npos) return Kind::ControlConfig;
  if (name.find("-policy.yaml") != std::string::npos) return Kind::ClusterPolicy;
  return Kind::ProxyConfig;
}

TEST(DocsConfigsTest, EveryExampleAndDeployConfigIsValid) {
  itest::TempDir tmp;
  std::vector<std::filesystem::path> files = filesUnder(sourcePath("config/examples"), {".yaml", ".yml"});
  for (const auto& p : filesUnder(sourcePath("deploy"), {".yaml", ".yml"})) files.push_back(p);
  int checked = 0;
  for (const auto& path : files) {
    const std::string relative = std::filesystem::relative(path, sourcePath("")).string();
    SCOPED_TRACE(relative);
    CommandResult r;
    switch (kindOf(relative)) {
      case Kind::KubernetesManifests:
        continue;  // kubernetes_manifests_test.cc validates the configs inside the ConfigMaps
      case Kind::ProxyConfig:
        r = runCommand(tmp, REMORA_BIN, {"--validate", path.string()});
        break;
      case Kind::ControlConfig:
        r = runCommand(tmp, REMORA_CONTROL_BIN, {"--validate", path.string()});
        break;
      case Kind::ClusterPolicy: {
        // What `remoractl policy set` sends is judged by the control plane's validator for
        // policies, which is also the one for `clusters:` in its config file.
        YAML::Node policy = YAML::LoadFile(path.string());
        YAML::Node wrapper;
        wrapper["clusters"].push_back(policy);
        YAML::Emitter out;
        out << wrapper;
        r = validateControlConfig(tmp, path.filename().string(), out.c_str());
        break;
      }
    }
    ++checked;
    EXPECT_EQ(r.exit_code, 0) << relative << ":\n" << r.output;
  }
  EXPECT_GE(checked, 5);
}

// The contract says "remora --config FILE ... --validate": that order checks the --config file,
// as `--validate FILE` does, for both binaries (a good file and a bad one each).
TEST(DocsConfigsTest, BothBinariesValidateTheConfigFileGivenWithConfig) {
  itest::TempDir dir;
  struct Case {
    std::string binary, good, bad;
  };
  const std::vector<Case> cases = {
      {REMORA_BIN,
       "listeners:\n"
       "  - { name: in, address: 127.0.0.1:15001, routes: [ { match: { prefix: / }, cluster: main } ] }\n"
       "clusters: [ { name: main, endpoints: [ { address: 127.0.0.1:8081 } ] } ]\n",
       "listeners: 5\n"},
      {REMORA_CONTROL_BIN, "listen: 127.0.0.1:18000\n", "listen: nowhere\n"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.binary);
    const auto good = dir.writeFile("good.yaml", c.good);
    CommandResult ok = runCommand(dir, c.binary, {"--config", good.string(), "--validate"});
    EXPECT_EQ(ok.exit_code, std::optional<int>(0)) << ok.output;
    EXPECT_NE(ok.output.find("good.yaml: OK"), std::string::npos) << ok.output;
    const auto bad = dir.writeFile("bad.yaml", c.bad);
    CommandResult refused = runCommand(dir, c.binary, {"--config", bad.string(), "--validate"});
    EXPECT_EQ(refused.exit_code, std::optional<int>(1)) << refused.output;
    EXPECT_NE(refused.output.find("bad.yaml:1:"), std::string::npos) << refused.output;
  }
}

}  // namespace
}  // namespace remora::deploy_test
