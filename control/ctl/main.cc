// remoractl: the command line for remora-control. See `remoractl --help` and control/README.md.
//
// Exit codes: 0 done, 1 the control plane said no (its reason is printed), 2 usage or a local
// file problem, 3 the control plane could not be reached.

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "http/simple_server.h"
#include "http_client.h"
#include "remora/config/config.h"
#include "state.h"
#include "table.h"

namespace {

using nlohmann::json;
using remora::ctl::BlockingHttpClient;
using remora::ctl::HttpResult;
using remora::ctl::Table;

constexpr int kExitOk = 0;
constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

constexpr const char* kUsage =
    "usage: remoractl [--server HOST:PORT] [--token TOKEN] [--json] COMMAND ...\n"
    "\n"
    "commands:\n"
    "  services [SERVICE]                            registered instances\n"
    "  register SERVICE ID ADDRESS [--weight N] [--ttl D] [--metadata JSON]\n"
    "  deregister SERVICE ID\n"
    "  heartbeat SERVICE ID [--status UP|DOWN]\n"
    "  clusters                                      every cluster as proxies get it\n"
    "  policy set CLUSTER FILE.yaml                  set a cluster policy (proxy cluster schema)\n"
    "  policy get CLUSTER\n"
    "  policy delete CLUSTER\n"
    "  nodes                                         proxies and what they applied\n"
    "  history [--limit N]                           audit log\n"
    "\n"
    "options:\n"
    "  --server HOST:PORT   control plane (default $REMORA_CONTROL_SERVER or 127.0.0.1:18000)\n"
    "  --token TOKEN        bearer token for changes (default $REMORA_CONTROL_TOKEN)\n"
    "  --tls                HTTPS, server verified against the system CAs\n"
    "  --cacert FILE        HTTPS, server verified against FILE ($REMORA_CONTROL_CACERT)\n"
    "  --cert FILE --key FILE  client certificate for mTLS ($REMORA_CONTROL_CERT/_KEY)\n"
    "  --json               print the server's JSON instead of a table\n"
    "\n"
    "exit codes: 0 ok, 1 the control plane said no, 2 usage, 3 cannot connect\n";

struct Options {
  std::string server = "127.0.0.1:18000";
  std::string token;
  bool json_output = false;
  remora::ctl::TlsOptions tls;
  std::map<std::string, std::string> flags;  // --weight, --ttl, --status, --metadata, --limit
  std::vector<std::string> args;
};

int usage(const std::string& why) {
  std::fprintf(stderr, "remoractl: %s\n\n%s", why.c_str(), kUsage);
  return kExitUsage;
}

// ':' stays as written: instance ids are often host:port.
std::string urlEncode(const std::string& s) { return remora::http::percentEncode(s, ":"); }

std::string str(const json& j, const char* key, const std::string& none = "-") {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return none;
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

// A YAML document as JSON: plain scalars that look like numbers, booleans or null become those;
// quoted scalars stay strings (the server's validator reads both the same way anyway).
json yamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json out = json::object();
      for (auto it = node.begin(); it != node.end(); ++it) {
        out[it->first.Scalar()] = yamlToJson(it->second);
      }
      return out;
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const YAML::Node& item : node) out.push_back(yamlToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() == "!") return s;
      if (s == "true" || s == "false") return s == "true";
      if (s == "null" || s == "~") return nullptr;
      if (!s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '-')) {
        json number = json::parse(s, nullptr, false);
        if (!number.is_discarded() && number.is_number()) return number;
      }
      return s;
    }
    default:
      return nullptr;
  }
}

class Cli {
 public:
  explicit Cli(Options options) : o_(std::move(options)) {}

  int run() {
    if (o_.args.empty()) return usage("no command");
    const std::string cmd = o_.args[0];
    const size_t n = o_.args.size();
    std::optional<remora::config::Address> addr = remora::config::parseAddress(o_.server);
    if (!addr) return usage("--server must be host:port, got \"" + o_.server + "\"");
    client_.emplace(addr->host, addr->port, std::chrono::milliseconds(10000), o_.tls);
    if (cmd == "services" && n <= 2) return services(n == 2 ? o_.args[1] : "");
    if (cmd == "register" && n == 4) return registerInstance();
    if (cmd == "deregister" && n == 3) return deregister();
    if (cmd == "heartbeat" && n == 3) return heartbeat();
    if (cmd == "clusters" && n == 1) return clusters();
    if (cmd == "policy" && n == 4 && o_.args[1] == "set") return policySet();
    if (cmd == "policy" && n == 3 && o_.args[1] == "get") return policyGet();
    if (cmd == "policy" && n == 3 && o_.args[1] == "delete") return policyDelete();
    if (cmd == "nodes" && n == 1) return nodes();
    if (cmd == "history" && n == 1) return history();
    const std::set<std::string> known = {"services", "register", "deregister", "heartbeat",
                                         "clusters", "policy",   "nodes",      "history"};
    if (known.count(cmd) != 0) return usage("wrong arguments for \"" + cmd + "\"");
    return usage("unknown command \"" + cmd + "\"");
  }

 private:
  // Sends a request. Returns the parsed JSON body for a 2xx; otherwise prints why and sets
  // `exit_code`.
  std::optional<json> call(const std::string& method, const std::string& path, int& exit_code,
                           const std::string& body = {}) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!o_.token.empty()) headers.emplace_back("authorization", "Bearer " + o_.token);
    if (!body.empty()) headers.emplace_back("content-type", "application/json");
    HttpResult r = client_->request(method, path, headers, body);
    if (!r.transport_ok) {
      std::fprintf(stderr, "remoractl: %s\n", r.error.c_str());
      exit_code = kExitUnreachable;
      return std::nullopt;
    }
    json j = json::parse(r.body, nullptr, false);
    if (r.status >= 300) {
      std::string why =
          !j.is_discarded() && j.is_object() && j.contains("error") ? str(j, "error") : r.body;
      std::fprintf(stderr, "remoractl: %s %s: %d %s\n", method.c_str(), path.c_str(), r.status,
                   why.c_str());
      exit_code = kExitRefused;
      return std::nullopt;
    }
    if (j.is_discarded()) {
      std::fprintf(stderr, "remoractl: %s %s: the answer is not JSON\n", method.c_str(),
                   path.c_str());
      exit_code = kExitUnreachable;
      return std::nullopt;
    }
    exit_code = kExitOk;
    return j;
  }

  // --json prints the raw answer and skips the table.
  bool printJson(const json& j) {
    if (!o_.json_output) return false;
    std::printf("%s\n", j.dump(2).c_str());
    return true;
  }

  int services(const std::string& svc) {
    int rc = 0;
    std::optional<json> j =
        call("GET", svc.empty() ? "/v1/services" : "/v1/services/" + urlEncode(svc), rc);
    if (!j) return rc;
    if (printJson(*j)) return kExitOk;
    json list = svc.empty() ? *j : json::array({*j});
    Table t({"SERVICE", "INSTANCE", "ADDRESS", "WEIGHT", "STATUS", "TTL", "LAST HEARTBEAT"});
    for (const json& s : list) {
      for (const json& i : s.at("instances")) {
        t.addRow({str(s, "name"), str(i, "id"), str(i, "address"), str(i, "weight"),
                  str(i, "status"), str(i, "ttl"), str(i, "since_heartbeat") + " ago"});
      }
    }
    if (t.rowCount() == 0) {
      std::printf("no registered instances\n");
    } else {
      std::fputs(t.render().c_str(), stdout);
    }
    return kExitOk;
  }

  std::string instancePath() {
    return "/v1/services/" + urlEncode(o_.args[1]) + "/instances/" + urlEncode(o_.args[2]);
  }

  int registerInstance() {
    json body = {{"address", o_.args[3]}};
    if (auto w = o_.flags.find("weight"); w != o_.flags.end()) {
      json weight = json::parse(w->second, nullptr, false);
      // Sent as written when it is not a number: the server explains what is wrong with it.
      body["weight"] = weight.is_discarded() ? json(w->second) : weight;
    }
    if (auto t = o_.flags.find("ttl"); t != o_.flags.end()) body["ttl"] = t->second;
    if (auto m = o_.flags.find("metadata"); m != o_.flags.end()) {
      json md = json::parse(m->second, nullptr, false);
      if (md.is_discarded()) return usage("--metadata must be a JSON object");
      body["metadata"] = md;
    }
    int rc = 0;
    std::optional<json> j = call("PUT", instancePath(), rc, body.dump());
    if (!j) return rc;
    if (printJson(*j)) return kExitOk;
    const json& inst = j->at("instance");
    std::printf("registered %s/%s at %s (weight %s, ttl %s), version %s\n", o_.args[1].c_str(),
                o_.args[2].c_str(), str(inst, "address").c_str(), str(inst, "weight").c_str(),
                str(inst, "ttl").c_str(), str(*j, "version").c_str());
    return kExitOk;
  }

  int deregister() {
    int rc = 0;
    std::optional<json> j = call("DELETE", instancePath(), rc);
    if (!j) return rc;
    if (printJson(*j)) return kExitOk;
    std::printf("deregistered %s/%s, version %s\n", o_.args[1].c_str(), o_.args[2].c_str(),
                str(*j, "version").c_str());
    return kExitOk;
  }

  int heartbeat() {
    json body = json::object();
    if (auto s = o_.flags.find("status"); s != o_.flags.end()) body["status"] = s->second;
    int rc = 0;
    std::optional<json> j = call("PUT", instancePath() + "/heartbeat", rc, body.dump());
    if (!j) return rc;
    if (printJson(*j)) return kExitOk;
    std::printf("%s/%s is %s\n", o_.args[1].c_str(), o_.args[2].c_str(),
                str(j->at("instance"), "status").c_str());
    return kExitOk;
  }

  int clusters() {
    int rc = 0;
    std::optional<json> j = call("GET", "/v1/clusters", rc);
    if (!j) return rc;
    if (printJson(*j)) return kExitOk;
    Table t({"CLUSTER", "SOURCE", "LB POLICY", "INSTANCES", "ENDPOINTS"});
    for (const json& c : *j) {
      const json& cluster = c.at("cluster");
      std::string endpoints;
      for (const json& e : cluster.at("endpoints")) {
        endpoints += (endpoints.empty() ? "" : ", ") + str(e, "address") + "*" + str(e, "weight");
      }
      t.addRow({str(c, "name"), str(c, "source"), str(cluster, "lb_policy"), str(c, "instances"),
                endpoints.empty() ? "(none)" : endpoints});
    }
    if (t.rowCount() == 0) {
      std::printf("no clusters\n");
    } else {
      std::fputs(t.render().c_str(), stdout);
    }
    return kExitOk;
  }

  int policySet() {
    const std::string& cluster = o_.args[2];
    const std::string& file = o_.args[3];
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "remoractl: cannot read %s\n", file.c_str());
      return kExitUsage;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      std::fprintf(stderr, "remoractl: %s:%d:%d: invalid YAML: %s\n", file.c_str(), e.mark.line + 1,
                   e.mark.column + 1, e.msg.c_str());
      return kExitUsage;
    }
    int rc = 0;
    std::optional<json> j =
        call("PUT", "/v1/clusters/" + urlEncode(cluster), rc, yamlToJson(root).dump(2));
    if (!j) {
      if (rc == kExitRefused) {
        // The server's positions are in the JSON it received; the same validator run here
        // points into the user's own file.
        std::vector<std::string> errors;
        remora::control::parsePolicy(text, cluster, file, errors);
        for (const std::string& e : errors) std::fprintf(stderr, "  %s\n", e.c_str());
      }
      return rc;
    }
    if (printJson(*j)) return kExitOk;
    std::printf("policy for cluster %s set, version %s\n", cluster.c_str(),
                str(*j, "version").c_str());
    return kExitOk;
  }

  int policyGet() {
    int rc = 0;
    std::optional<json> j = call("GET", "/v1/clusters/" + urlEncode(o_.args[2]), rc);
    if (!j) return rc;
    if (printJson(*j)) return kExitOk;
    std::printf("cluster %s (%s)\n", o_.args[2].c_str(), str(*j, "source").c_str());
    if (j->at("policy").is_null()) {
      std::printf("policy: none (defaults)\n");
    } else {
      std::printf("policy:\n%s\n", j->at("policy").dump(2).c_str());
    }
    std::printf("as pushed to proxies:\n%s\n", j->at("cluster").dump(2).c_str());
    return kExitOk;
  }

  int policyDelete() {
    int rc = 0;
    std::optional<json> j = call("DELETE", "/v1/clusters/" + urlEncode(o_.args[2]), rc);
    if (!j) return rc;
    if (printJson(*j)) return kExitOk;
    std::printf("policy for cluster %s deleted, version %s\n", o_.args[2].c_str(),
                str(*j, "version").c_str());
    return kExitOk;
  }

  int nodes() {
    int rc = 0;
    std::optional<json> j = call("GET", "/v1/nodes", rc);
    if (!j) return rc;
    if (printJson(*j)) return kExitOk;
    Table t({"NODE", "CONNECTED", "SENT", "ACKED", "NACKED", "LAST ERROR"});
    for (const json& node : *j) {
      t.addRow({str(node, "node_id"), node.value("connected", false) ? "yes" : "no",
                str(node, "sent_version"), str(node, "acked_version"), str(node, "nacked_version"),
                str(node, "last_error")});
    }
    if (t.rowCount() == 0) {
      std::printf("no nodes have connected\n");
    } else {
      std::fputs(t.render().c_str(), stdout);
    }
    return kExitOk;
  }

  int history() {
    std::string path = "/v1/history";
    if (auto l = o_.flags.find("limit"); l != o_.flags.end())
      path += "?limit=" + urlEncode(l->second);
    int rc = 0;
    std::optional<json> j = call("GET", path, rc);
    if (!j) return rc;
    if (printJson(*j)) return kExitOk;
    Table t({"VERSION", "TIME", "ACTOR", "CHANGE"});
    for (const json& h : *j) {
      t.addRow({str(h, "version"), str(h, "time"), str(h, "actor"), str(h, "change")});
    }
    if (t.rowCount() == 0) {
      std::printf("no history yet\n");
    } else {
      std::fputs(t.render().c_str(), stdout);
    }
    return kExitOk;
  }

  Options o_;
  std::optional<BlockingHttpClient> client_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (const char* s = std::getenv("REMORA_CONTROL_SERVER"); s != nullptr && *s != '\0') {
    o.server = s;
  }
  if (const char* t = std::getenv("REMORA_CONTROL_TOKEN"); t != nullptr) o.token = t;
  for (auto [env, field] : {std::pair{"REMORA_CONTROL_CACERT", &o.tls.ca_file},
                            std::pair{"REMORA_CONTROL_CERT", &o.tls.cert_file},
                            std::pair{"REMORA_CONTROL_KEY", &o.tls.key_file}}) {
    if (const char* v = std::getenv(env); v != nullptr) *field = v;
  }
  const std::set<std::string> valued = {"--server", "--token",  "--weight", "--ttl",   "--status",
                                        "--metadata", "--limit", "--cacert", "--cert", "--key"};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    if (arg == "--json") {
      o.json_output = true;
      continue;
    }
    if (arg == "--tls") {
      o.tls.enabled = true;
      continue;
    }
    std::string value;
    bool has_value = false;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      has_value = true;
    }
    if (valued.count(arg) != 0) {
      if (!has_value) {
        if (i + 1 >= argc) return usage(arg + " needs a value");
        value = argv[++i];
      }
      if (arg == "--server") {
        o.server = value;
      } else if (arg == "--token") {
        o.token = value;
      } else if (arg == "--cacert") {
        o.tls.ca_file = value;
      } else if (arg == "--cert") {
        o.tls.cert_file = value;
      } else if (arg == "--key") {
        o.tls.key_file = value;
      } else {
        o.flags[arg.substr(2)] = value;
      }
      continue;
    }
    if (arg.rfind("--", 0) == 0) return usage("unknown option \"" + arg + "\"");
    o.args.push_back(arg);
  }
  if (!o.tls.ca_file.empty() || !o.tls.cert_file.empty()) o.tls.enabled = true;
  if (o.tls.cert_file.empty() != o.tls.key_file.empty()) {
    return usage("--cert and --key go together (the client certificate and its key)");
  }
  return Cli(std::move(o)).run();
}
