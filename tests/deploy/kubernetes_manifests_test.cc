// deploy/kubernetes: every YAML document parses, has the fields Kubernetes needs, and the pieces
// refer to each other consistently (volumes and mounts, probes and ports, Services and pods,
// Secrets and ConfigMaps); the configs embedded in ConfigMaps pass the real validators and agree
// with the manifests (ports, paths, drain time vs grace period).

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "control_config.h"
#include "deploy_util.h"
#include "remora/config/config.h"

namespace remora::deploy_test {
namespace {

struct Doc {
  std::string file;
  YAML::Node node;
  std::string kind() const { return node["kind"].as<std::string>(""); }
  std::string name() const { return node["metadata"]["name"].as<std::string>(""); }
};

std::vector<Doc> loadManifests() {
  std::vector<Doc> docs;
  for (const auto& path : filesUnder(sourcePath("deploy/kubernetes"), {".yaml", ".yml"})) {
    const std::string file = path.filename().string();
    std::vector<YAML::Node> nodes;
    try {
      nodes = YAML::LoadAllFromFile(path.string());
    } catch (const YAML::Exception& e) {
      ADD_FAILURE() << path << ": " << e.what();
      continue;
    }
    for (const YAML::Node& n : nodes) {
      if (n.IsNull()) continue;  // a comment-only document
      docs.push_back({file, n});
    }
  }
  return docs;
}

const Doc* find(const std::vector<Doc>& docs, const std::string& kind, const std::string& name) {
  for (const Doc& d : docs) {
    if (d.kind() == kind && d.name() == name) return &d;
  }
  return nullptr;
}

YAML::Node container(const YAML::Node& pod_spec, const std::string& name) {
  for (const YAML::Node& c : pod_spec["containers"]) {
    if (c["name"].as<std::string>("") == name) return c;
  }
  return YAML::Node();
}

// containerPort of a named port (or a number given as is); 0 if unknown.
int resolvePort(const YAML::Node& c, const YAML::Node& port) {
  if (!port.IsScalar()) return 0;
  const std::string p = port.Scalar();
  if (std::regex_match(p, std::regex(R"(\d+)"))) return std::stoi(p);
  for (const YAML::Node& cp : c["ports"]) {
    if (cp["name"].as<std::string>("") == p) return cp["containerPort"].as<int>(0);
  }
  return 0;
}

bool labelsMatch(const YAML::Node& selector, const YAML::Node& labels) {
  if (!selector.IsMap() || selector.size() == 0) return false;
  for (auto it = selector.begin(); it != selector.end(); ++it) {
    if (!labels[it->first.Scalar()] ||
        labels[it->first.Scalar()].as<std::string>() != it->second.as<std::string>()) {
      return false;
    }
  }
  return true;
}

class KubernetesManifestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    docs_ = loadManifests();
    ASSERT_FALSE(docs_.empty()) << "no manifests under deploy/kubernetes";
  }
  std::vector<Doc> docs_;
  itest::TempDir tmp_;
};

TEST_F(KubernetesManifestsTest, EveryDocumentIsAnObjectWithKindAndName) {
  std::multiset<std::string> kinds;
  for (const Doc& d : docs_) {
    if (d.kind() == "Kustomization") continue;  // kustomize's file, not an API object
    SCOPED_TRACE(d.file + ": " + d.kind() + "/" + d.name());
    ASSERT_TRUE(d.node.IsMap());
    EXPECT_FALSE(d.node["apiVersion"].as<std::string>("").empty());
    EXPECT_FALSE(d.kind().empty());
    EXPECT_FALSE(d.name().empty());
    kinds.insert(d.kind());
  }
  // What the deploy issue promises: a sidecar Deployment with its ConfigMap, the control plane
  // as Deployment + Service with its state on a PersistentVolumeClaim.
  EXPECT_EQ(kinds.count("Deployment"), 2u);
  EXPECT_GE(kinds.count("ConfigMap"), 2u);
  EXPECT_GE(kinds.count("Service"), 2u);
  EXPECT_EQ(kinds.count("PersistentVolumeClaim"), 1u);
  EXPECT_EQ(kinds.count("NetworkPolicy"), 1u);
  // kustomization.yaml lists every other file.
  const Doc* kustomization = nullptr;
  for (const Doc& d : docs_) {
    if (d.kind() == "Kustomization") kustomization = &d;
  }
  ASSERT_NE(kustomization, nullptr) << "deploy/kubernetes/kustomization.yaml is missing";
  std::set<std::string> listed;
  for (const YAML::Node& r : kustomization->node["resources"]) listed.insert(r.as<std::string>());
  for (const Doc& d : docs_) {
    if (&d == kustomization) continue;
    EXPECT_EQ(listed.count(d.file), 1u) << d.file << " is not in kustomization.yaml's resources";
  }
}

// Pod-level checks that hold for both Deployments.
void checkPodSpec(const std::vector<Doc>& docs, const Doc& deployment) {
  SCOPED_TRACE("Deployment " + deployment.name());
  const YAML::Node spec = deployment.node["spec"];
  const YAML::Node pod = spec["template"]["spec"];
  ASSERT_TRUE(pod.IsMap());
  EXPECT_TRUE(labelsMatch(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"]))
      << "selector.matchLabels must be a subset of the pod template's labels";
  EXPECT_TRUE(pod["securityContext"]["runAsNonRoot"].as<bool>(false));
  EXPECT_GT(pod["securityContext"]["runAsUser"].as<int>(0), 0);

  std::map<std::string, YAML::Node> volumes;
  for (const YAML::Node& v : pod["volumes"]) {
    volumes[v["name"].as<std::string>()] = v;
    if (v["configMap"]) {
      const Doc* cm = find(docs, "ConfigMap", v["configMap"]["name"].as<std::string>(""));
      ASSERT_NE(cm, nullptr) << "volume " << v["name"] << " names a ConfigMap not defined here";
      for (const YAML::Node& item : v["configMap"]["items"]) {
        EXPECT_TRUE(cm->node["data"][item["key"].as<std::string>()])
            << "ConfigMap " << cm->name() << " has no key " << item["key"];
      }
    } else if (v["secret"]) {
      const Doc* s = find(docs, "Secret", v["secret"]["secretName"].as<std::string>(""));
      ASSERT_NE(s, nullptr) << "volume " << v["name"] << " names a Secret not defined here";
      for (const YAML::Node& item : v["secret"]["items"]) {
        EXPECT_TRUE(s->node["stringData"][item["key"].as<std::string>()])
            << "Secret " << s->name() << " has no key " << item["key"];
      }
    } else if (v["persistentVolumeClaim"]) {
      EXPECT_NE(find(docs, "PersistentVolumeClaim",
                     v["persistentVolumeClaim"]["claimName"].as<std::string>("")),
                nullptr)
          << "volume " << v["name"] << " names a PersistentVolumeClaim not defined here";
    }
  }
  std::set<std::string> mounted;
  ASSERT_GT(pod["containers"].size(), 0u);
  for (const YAML::Node& c : pod["containers"]) {
    const std::string cname = c["name"].as<std::string>("");
    SCOPED_TRACE("container " + cname);
    EXPECT_FALSE(cname.empty());
    EXPECT_FALSE(c["image"].as<std::string>("").empty());
    EXPECT_TRUE(c["securityContext"]["readOnlyRootFilesystem"].as<bool>(false));
    EXPECT_FALSE(c["securityContext"]["allowPrivilegeEscalation"].as<bool>(true));
    EXPECT_EQ(c["securityContext"]["capabilities"]["drop"][0].as<std::string>(""), "ALL");
    EXPECT_TRUE(c["resources"]["requests"]["memory"]) << "no memory request";
    EXPECT_TRUE(c["resources"]["limits"]["memory"]) << "no memory limit";
    std::set<std::string> paths;
    for (const YAML::Node& m : c["volumeMounts"]) {
      const std::string vname = m["name"].as<std::string>("");
      EXPECT_EQ(volumes.count(vname), 1u) << "mount of undefined volume " << vname;
      mounted.insert(vname);
      const std::string path = m["mountPath"].as<std::string>("");
      // A mount inside a read-only ConfigMap/Secret mount fails at pod start (no mkdir there).
      for (const std::string& other : paths) {
        EXPECT_NE(path.rfind(other + "/", 0), 0u) << path << " is nested in " << other;
        EXPECT_NE(other.rfind(path + "/", 0), 0u) << other << " is nested in " << path;
      }
      paths.insert(path);
    }
    for (const char* probe : {"readinessProbe", "livenessProbe"}) {
      if (!c[probe]) continue;
      if (c[probe]["httpGet"]) {
        EXPECT_GT(resolvePort(c, c[probe]["httpGet"]["port"]), 0)
            << probe << " port " << c[probe]["httpGet"]["port"] << " is not a port of the container";
      }
    }
  }
  for (const auto& [name, v] : volumes) {
    EXPECT_EQ(mounted.count(name), 1u) << "volume " << name << " is never mounted";
  }
}

TEST_F(KubernetesManifestsTest, DeploymentsAreConsistentAndLockedDown) {
  int deployments = 0;
  for (const Doc& d : docs_) {
    if (d.kind() != "Deployment") continue;
    ++deployments;
    checkPodSpec(docs_, d);
  }
  EXPECT_EQ(deployments, 2);
}

TEST_F(KubernetesManifestsTest, ServicesSelectPodsAndTargetTheirPorts) {
  for (const Doc& svc : docs_) {
    if (svc.kind() != "Service") continue;
    SCOPED_TRACE("Service " + svc.name());
    const Doc* target = nullptr;
    for (const Doc& d : docs_) {
      if (d.kind() == "Deployment" &&
          labelsMatch(svc.node["spec"]["selector"], d.node["spec"]["template"]["metadata"]["labels"])) {
        target = &d;
      }
    }
    ASSERT_NE(target, nullptr) << "selects no Deployment's pods";
    for (const YAML::Node& port : svc.node["spec"]["ports"]) {
      bool found = false;
      for (const YAML::Node& c : target->node["spec"]["template"]["spec"]["containers"]) {
        found = found || resolvePort(c, port["targetPort"]) > 0;
      }
      EXPECT_TRUE(found) << "targetPort " << port["targetPort"] << " is no container port";
    }
  }
}

TEST_F(KubernetesManifestsTest, SidecarConfigValidatesAndMatchesThePod) {
  const Doc* deployment = find(docs_, "Deployment", "orders");
  ASSERT_NE(deployment, nullptr);
  const YAML::Node pod = deployment->node["spec"]["template"]["spec"];
  const YAML::Node app = container(pod, "app");
  const YAML::Node remora = container(pod, "remora");
  const YAML::Node reg = container(pod, "register");
  ASSERT_TRUE(app.IsMap()) << "no app container";
  ASSERT_TRUE(remora.IsMap()) << "no remora container";
  ASSERT_TRUE(reg.IsMap()) << "no register container";

  // The config the sidecar runs: the ConfigMap key mounted where --config points.
  std::string config_path;
  const YAML::Node args = remora["args"];
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i].as<std::string>() == "--config") config_path = args[i + 1].as<std::string>();
  }
  ASSERT_FALSE(config_path.empty()) << "remora has no --config argument";
  std::string volume;
  for (const YAML::Node& m : remora["volumeMounts"]) {
    const std::string dir = m["mountPath"].as<std::string>();
    if (config_path.rfind(dir + "/", 0) == 0) volume = m["name"].as<std::string>();
  }
  ASSERT_FALSE(volume.empty()) << config_path << " is not on a mounted volume";
  std::string cm_name;
  for (const YAML::Node& v : pod["volumes"]) {
    if (v["name"].as<std::string>() == volume) cm_name = v["configMap"]["name"].as<std::string>("");
  }
  const Doc* cm = find(docs_, "ConfigMap", cm_name);
  ASSERT_NE(cm, nullptr);
  const std::string key = std::filesystem::path(config_path).filename().string();
  const std::string yaml = cm->node["data"][key].as<std::string>("");
  ASSERT_FALSE(yaml.empty()) << "ConfigMap " << cm_name << " has no " << key;

  CommandResult v = validateProxyConfig(tmp_, "sidecar-remora.yaml", yaml);
  EXPECT_EQ(v.exit_code, 0) << "remora --validate on ConfigMap " << cm_name << ":\n" << v.output;
  config::LoadResult cfg = config::loadString(yaml, "ConfigMap " + cm_name);
  ASSERT_TRUE(cfg.ok()) << cfg.formatErrors();
  const config::Config& c = *cfg.config;

  // Probes hit the admin API, which must then listen on the pod IP.
  ASSERT_TRUE(remora["readinessProbe"]["httpGet"]) << "remora needs an HTTP readiness probe";
  EXPECT_EQ(remora["readinessProbe"]["httpGet"]["path"].as<std::string>(""), "/ready");
  EXPECT_EQ(resolvePort(remora, remora["readinessProbe"]["httpGet"]["port"]), c.admin.address.port);
  EXPECT_EQ(c.admin.address.host, "0.0.0.0") << "the kubelet probes the pod IP, not loopback";
  // A liveness probe on /ready would restart every proxy during a control-plane outage.
  EXPECT_NE(remora["livenessProbe"]["httpGet"]["path"].as<std::string>("/ready"), "/ready");

  // The inbound listener is the container's "http" port, on every interface; the app is on
  // loopback only, reached through the local cluster.
  const config::Listener* inbound = nullptr;
  for (const config::Listener& l : c.listeners) {
    if (l.name == "inbound") inbound = &l;
  }
  ASSERT_NE(inbound, nullptr);
  EXPECT_EQ(inbound->address.host, "0.0.0.0");
  EXPECT_EQ(resolvePort(remora, YAML::Node("http")), inbound->address.port);
  const config::Cluster* local = c.findCluster("local-app");
  ASSERT_NE(local, nullptr);
  ASSERT_EQ(local->endpoints.size(), 1u);
  EXPECT_EQ(local->endpoints[0].address.host, "127.0.0.1");
  bool app_on_loopback = false;
  for (const YAML::Node& a : app["args"]) {
    app_on_loopback = app_on_loopback ||
                      a.as<std::string>() ==
                          "-listen=127.0.0.1:" + std::to_string(local->endpoints[0].address.port);
  }
  EXPECT_TRUE(app_on_loopback) << "the app must listen where the local-app cluster points";

  // Drain: the grace period covers the preStop sleep plus drain_timeout.
  const YAML::Node pre_stop = remora["lifecycle"]["preStop"]["exec"]["command"];
  ASSERT_TRUE(pre_stop.IsSequence()) << "remora needs a preStop hook";
  ASSERT_EQ(pre_stop[0].as<std::string>(), "/bin/sleep");
  const int sleep_s = pre_stop[1].as<int>();
  const int grace_s = pod["terminationGracePeriodSeconds"].as<int>(30);
  EXPECT_GT(grace_s * 1000, sleep_s * 1000 + c.drain_timeout.count())
      << "terminationGracePeriodSeconds must cover preStop + drain_timeout";

  // The control plane named in the config is the Service in control-plane.yaml, on its port.
  ASSERT_TRUE(c.control_plane.has_value());
  const Doc* cp_svc = find(docs_, "Service", c.control_plane->address.host);
  ASSERT_NE(cp_svc, nullptr) << c.control_plane->address.host << " is no Service here";
  EXPECT_EQ(cp_svc->node["spec"]["ports"][0]["port"].as<int>(), c.control_plane->address.port);

  // The token file is mounted from the Secret the register container also uses, and that token
  // is one the control plane accepts.
  const std::filesystem::path token_path = c.control_plane->token_file;
  std::string token_volume;
  for (const YAML::Node& m : remora["volumeMounts"]) {
    if (m["mountPath"].as<std::string>() == token_path.parent_path().string()) {
      token_volume = m["name"].as<std::string>();
    }
  }
  ASSERT_FALSE(token_volume.empty()) << token_path << " is not on a mounted volume";
  std::string secret_name;
  for (const YAML::Node& v : pod["volumes"]) {
    if (v["name"].as<std::string>() == token_volume) {
      secret_name = v["secret"]["secretName"].as<std::string>("");
    }
  }
  const Doc* secret = find(docs_, "Secret", secret_name);
  ASSERT_NE(secret, nullptr);
  const std::string token = secret->node["stringData"][token_path.filename().string()].as<std::string>("");
  ASSERT_FALSE(token.empty());
  const Doc* tokens = find(docs_, "Secret", "remora-control-tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_NE(tokens->node["stringData"]["tokens"].as<std::string>("").find(":" + token + "\n"),
            std::string::npos)
      << "the sidecars' token is not in the control plane's tokens file";
  bool reg_uses_secret = false;
  std::map<std::string, std::string> env;
  for (const YAML::Node& e : reg["env"]) {
    if (e["value"]) env[e["name"].as<std::string>()] = e["value"].as<std::string>();
    if (e["name"].as<std::string>() == "REMORA_CONTROL_TOKEN") {
      reg_uses_secret = e["valueFrom"]["secretKeyRef"]["name"].as<std::string>("") == secret_name;
    }
  }
  EXPECT_TRUE(reg_uses_secret);
  EXPECT_EQ(reg["command"][0].as<std::string>(""), "/usr/local/bin/remora-register");
  // Other proxies reach this pod through its inbound listener, and the service name is a
  // cluster the sidecar config's control plane serves.
  EXPECT_EQ(env["REMORA_ADDRESS"], "$(POD_IP):" + std::to_string(inbound->address.port));
  EXPECT_EQ(env["REMORA_CONTROL_SERVER"], c.control_plane->address.str());
  // It registers the pod only once the sidecar is ready to take traffic.
  EXPECT_EQ(env["REMORA_WAIT_FOR_READY"], "127.0.0.1:" + std::to_string(c.admin.address.port));
  EXPECT_FALSE(env["REMORA_SERVICE"].empty());

  // The NetworkPolicy admits the inbound port and nothing else (not the admin API).
  const Doc* np = find(docs_, "NetworkPolicy", "orders");
  ASSERT_NE(np, nullptr);
  std::set<int> allowed;
  for (const YAML::Node& rule : np->node["spec"]["ingress"]) {
    for (const YAML::Node& p : rule["ports"]) allowed.insert(p["port"].as<int>());
  }
  EXPECT_EQ(allowed, std::set<int>{inbound->address.port});
}

TEST_F(KubernetesManifestsTest, ControlPlaneConfigValidatesAndItsStateIsOnTheVolume) {
  const Doc* deployment = find(docs_, "Deployment", "remora-control");
  ASSERT_NE(deployment, nullptr);
  const YAML::Node spec = deployment->node["spec"];
  // One writer per state file: never two pods on the same volume.
  EXPECT_EQ(spec["replicas"].as<int>(), 1);
  EXPECT_EQ(spec["strategy"]["type"].as<std::string>(""), "Recreate");
  const YAML::Node pod = spec["template"]["spec"];
  const YAML::Node c = container(pod, "remora-control");
  ASSERT_TRUE(c.IsMap());
  EXPECT_GT(pod["securityContext"]["fsGroup"].as<int>(0), 0) << "the volume must be writable";

  const Doc* cm = find(docs_, "ConfigMap", "remora-control");
  ASSERT_NE(cm, nullptr);
  const std::string yaml = cm->node["data"]["remora-control.yaml"].as<std::string>("");
  CommandResult v = validateControlConfig(tmp_, "remora-control.yaml", yaml);
  EXPECT_EQ(v.exit_code, 0) << v.output;
  control::ControlConfigResult cfg = control::loadControlConfigString(yaml, "ConfigMap");
  ASSERT_TRUE(cfg.ok()) << cfg.formatErrors();

  std::map<std::string, std::string> mounts;  // path -> volume
  for (const YAML::Node& m : c["volumeMounts"]) {
    mounts[m["mountPath"].as<std::string>()] = m["name"].as<std::string>();
  }
  const std::string state_dir =
      std::filesystem::path(cfg.config->state_file).parent_path().string();
  ASSERT_EQ(mounts.count(state_dir), 1u) << "state_file's directory is not a mount";
  std::string claim;
  for (const YAML::Node& v : pod["volumes"]) {
    if (v["name"].as<std::string>() == mounts[state_dir]) {
      claim = v["persistentVolumeClaim"]["claimName"].as<std::string>("");
    }
  }
  EXPECT_NE(find(docs_, "PersistentVolumeClaim", claim), nullptr)
      << "the state directory must be on the PersistentVolumeClaim";
  const std::string tokens_dir =
      std::filesystem::path(cfg.config->tokens_file).parent_path().string();
  EXPECT_EQ(mounts.count(tokens_dir), 1u) << "auth.tokens_file's directory is not a mount";

  // Listens on the pod IP, on the port the Service targets and the probes use.
  EXPECT_EQ(cfg.config->listen.host, "0.0.0.0");
  EXPECT_EQ(resolvePort(c, YAML::Node("api")), cfg.config->listen.port);
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"].as<std::string>(""), "/healthz");
  // Every cluster the sidecar's routes name has a policy (its breaker settings); without one the
  // route answers 503 no-healthy-endpoint until an instance registers, then has no breaker.
  const Doc* sidecar_cm = find(docs_, "ConfigMap", "orders-remora");
  ASSERT_NE(sidecar_cm, nullptr);
  config::LoadResult sidecar =
      config::loadString(sidecar_cm->node["data"]["remora.yaml"].as<std::string>(""));
  ASSERT_TRUE(sidecar.ok());
  for (const config::Listener& l : sidecar.config->listeners) {
    for (const config::Route& r : l.routes) {
      for (const config::WeightedCluster& wc : r.clusters) {
        if (sidecar.config->findCluster(wc.name) != nullptr) continue;
        bool has_policy = false;
        for (const config::Cluster& p : cfg.config->clusters) has_policy |= p.name == wc.name;
        EXPECT_TRUE(has_policy) << "route " << r.name << " names cluster " << wc.name
                                << ", which has no policy in the control plane's ConfigMap";
      }
    }
  }
}

}  // namespace
}  // namespace remora::deploy_test
