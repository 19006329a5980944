#include "api.h"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "json_text.h"
#include "remora/config/json.h"

namespace remora::control {

namespace {

using http::ResponderSharedPtr;
using http::SimpleRequest;
using nlohmann::json;

constexpr uint32_t kMaxWeight = 1000000;  // the proxy's limit
constexpr config::Duration kMinTtl{10};
constexpr config::Duration kMaxTtl{24 * 3600 * 1000};
constexpr size_t kMaxMetadataBytes = 8192;

bool isValidInstanceId(std::string_view s) {
  return !s.empty() && s.size() <= 128 && !isDotSegment(s) &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '-' || c == '_' || c == '.' || c == ':';
         });
}

std::vector<std::string> splitPath(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    if (i >= path.size()) break;
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    out.push_back(http::percentDecode(path.substr(i, j - i)));
    i = j;
  }
  return out;
}

// Parses a JSON object body; an empty body is an empty object when `empty_ok`.
std::optional<json> parseBody(const SimpleRequest& req, bool empty_ok, std::string& error) {
  const bool blank = std::all_of(req.body.begin(), req.body.end(), [](char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
  });
  if (blank) {
    if (empty_ok) return json::object();
    error = "the request needs a JSON body";
    return std::nullopt;
  }
  if (config::jsonNestsDeeperThan(req.body)) {
    error = "the body nests arrays or objects more than " + std::to_string(config::kMaxJsonDepth) +
            " levels deep";
    return std::nullopt;
  }
  json j;
  try {
    j = json::parse(req.body);
  } catch (const json::parse_error& e) {
    error = std::string("the body is not valid JSON: ") + e.what();
    return std::nullopt;
  }
  if (!j.is_object()) {
    error = "the body must be a JSON object";
    return std::nullopt;
  }
  return j;
}

std::string checkKeys(const json& j, const std::set<std::string>& allowed) {
  for (const auto& [k, v] : j.items()) {
    if (allowed.count(k) == 0) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return "unknown key \"" + k + "\"; allowed: " + list;
    }
  }
  return {};
}

std::string describeInstance(const InstanceSpec& s) {
  return s.address.str() + " weight " + std::to_string(s.weight) + " ttl " +
         config::formatDuration(s.ttl);
}

}  // namespace

http::SimpleResponse jsonError(int status, const std::string& message) {
  return http::SimpleResponse::json(status, json{{"error", message}}.dump() + "\n");
}

http::SimpleResponse jsonResponse(int status, const json& body) {
  return http::SimpleResponse::json(status, body.dump() + "\n");
}

std::optional<std::string> Authenticator::actor(const SimpleRequest& request) const {
  if (!enabled()) return std::string(kActorAnonymous);
  const std::string* h = request.headers.get("authorization");
  if (h == nullptr) return std::nullopt;
  std::string_view v = *h;
  constexpr std::string_view kBearer = "bearer ";
  if (v.size() <= kBearer.size()) return std::nullopt;
  std::string scheme(v.substr(0, kBearer.size()));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), ::tolower);
  if (scheme != kBearer) return std::nullopt;
  v.remove_prefix(kBearer.size());
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  for (const Token& t : tokens_) {
    // Constant time, so response timing does not leak how much of a token was right.
    if (t.token.size() == v.size() && CRYPTO_memcmp(t.token.data(), v.data(), v.size()) == 0) {
      return t.name;
    }
  }
  return std::nullopt;
}

void ControlApi::handle(const SimpleRequest& req, const ResponderSharedPtr& r) {
  const std::vector<std::string> seg = splitPath(req.path);
  std::string actor = kActorAnonymous;
  const bool read_only = req.method == "GET" || req.method == "HEAD";
  if (!read_only) {
    std::optional<std::string> a = d_.auth.actor(req);
    if (!a) {
      http::SimpleResponse resp =
          jsonError(401, req.headers.get("authorization") == nullptr
                             ? "this call changes state and needs \"Authorization: Bearer <token>\""
                             : "the bearer token is not one of auth.tokens_file's");
      resp.headers.add("www-authenticate", "Bearer realm=\"remora-control\"");
      r->respond(std::move(resp));
      return;
    }
    actor = *a;
  }
  try {
    route(req, seg, actor, r);
  } catch (const std::exception& e) {
    // A bug, not the client's fault; answer rather than drop the connection.
    spdlog::error("{} {}: internal error: {}", req.method, req.path, e.what());
    if (r->pending()) r->respond(jsonError(500, std::string("internal error: ") + e.what()));
  }
}

void ControlApi::route(const SimpleRequest& req, const Segments& seg, const std::string& actor,
                       const ResponderSharedPtr& r) {
  const std::string& m = req.method;
  auto allow = [&](const char* methods) {
    http::SimpleResponse resp =
        jsonError(405, "method " + m + " is not allowed on " + req.path + "; use " + methods);
    resp.headers.add("allow", methods);
    r->respond(std::move(resp));
  };
  const size_t n = seg.size();
  auto is = [&](std::initializer_list<const char*> parts) {
    if (parts.size() != n) return false;
    size_t i = 0;
    for (const char* p : parts) {
      if (*p != '*' && seg[i] != p) return false;
      ++i;
    }
    return true;
  };
  const bool get = m == "GET" || m == "HEAD";

  if (is({"healthz"})) {
    if (!get) return allow("GET");
    return r->respond(
        jsonResponse(200, {{"status", "ok"},
                           {"version", std::to_string(d_.state.version())},
                           {"durable_version", std::to_string(d_.persister.durableVersion())},
                           {"state_writes", d_.persister.writes()}}));
  }
  if (n == 0 || seg[0] != "v1") {
    return r->respond(jsonError(404, "no such resource " + req.path + "; the API is under /v1/"));
  }
  if (is({"v1", "services"})) {
    if (!get) return allow("GET");
    return listServices(r);
  }
  if (n >= 3 && seg[1] == "services" && !isValidName(seg[2])) {
    return r->respond(jsonError(400, "invalid service name \"" + seg[2] +
                                         "\"; use letters, digits, '-', '_' and '.', not '.' or "
                                         "'..' alone (it is also the cluster name)"));
  }
  if (is({"v1", "services", "*"}) || is({"v1", "services", "*", "instances"})) {
    if (!get) return allow("GET");
    return getService(seg[2], r);
  }
  if ((is({"v1", "services", "*", "instances", "*"}) ||
       is({"v1", "services", "*", "instances", "*", "heartbeat"})) &&
      !isValidInstanceId(seg[4])) {
    return r->respond(jsonError(400, "invalid instance id \"" + seg[4] +
                                         "\"; use up to 128 letters, digits, '-', '_', '.', ':', "
                                         "not '.' or '..' alone"));
  }
  if (is({"v1", "services", "*", "instances", "*"})) {
    if (m == "PUT") return registerInstance(req, seg[2], seg[4], actor, r);
    if (m == "DELETE") return deregister(seg[2], seg[4], actor, r);
    if (get) return getInstance(seg[2], seg[4], r);
    return allow("GET, PUT, DELETE");
  }
  if (is({"v1", "services", "*", "instances", "*", "heartbeat"})) {
    if (m == "PUT" || m == "POST") return heartbeat(req, seg[2], seg[4], actor, r);
    return allow("PUT");
  }
  if (is({"v1", "clusters"})) {
    if (!get) return allow("GET");
    return listClusters(r);
  }
  if (is({"v1", "clusters", "*"})) {
    if (!isValidName(seg[2])) {
      return r->respond(
          jsonError(400, "invalid cluster name \"" + seg[2] +
                             "\"; use letters, digits, '-', '_' and '.', not '.' or '..' "
                             "alone"));
    }
    if (m == "PUT") return putPolicy(req, seg[2], actor, r);
    if (m == "DELETE") return deletePolicy(seg[2], actor, r);
    if (get) return getCluster(seg[2], r);
    return allow("GET, PUT, DELETE");
  }
  if (is({"v1", "discovery"})) {
    if (m != "GET") return allow("GET");
    const std::string node = http::percentDecode(http::queryParam(req.query, "node"));
    if (node.empty()) {
      return r->respond(jsonError(400, "the node id is required: GET /v1/discovery?node=ID"));
    }
    return d_.discovery.openStream(node, r);
  }
  if (is({"v1", "discovery", "ack"})) {
    if (m != "POST") return allow("POST");
    return ack(req, r);
  }
  if (is({"v1", "nodes"})) {
    if (!get) return allow("GET");
    return r->respond(jsonResponse(200, d_.discovery.nodesJson()));
  }
  if (is({"v1", "history"})) {
    if (!get) return allow("GET");
    return history(req, r);
  }
  r->respond(jsonError(404, "no such resource " + req.path));
}

void ControlApi::listServices(const ResponderSharedPtr& r) {
  json out = json::array();
  const Registry& reg = d_.state.registry();
  for (const auto& [name, service] : reg.services()) {
    json instances = json::array();
    for (const auto& [id, inst] : service.instances) instances.push_back(reg.instanceJson(inst));
    out.push_back({{"name", name}, {"instances", std::move(instances)}});
  }
  r->respond(jsonResponse(200, out));
}

void ControlApi::getService(const std::string& svc, const ResponderSharedPtr& r) {
  const Registry& reg = d_.state.registry();
  const Service* service = reg.findService(svc);
  if (service == nullptr) {
    return r->respond(jsonError(404, "no service \"" + svc + "\" (no registered instances)"));
  }
  json instances = json::array();
  for (const auto& [id, inst] : service->instances) instances.push_back(reg.instanceJson(inst));
  r->respond(jsonResponse(200, {{"name", svc}, {"instances", std::move(instances)}}));
}

void ControlApi::getInstance(const std::string& svc, const std::string& id,
                             const ResponderSharedPtr& r) {
  const Instance* inst = d_.state.registry().findInstance(svc, id);
  if (inst == nullptr) {
    return r->respond(jsonError(404, "no instance \"" + id + "\" in service \"" + svc + "\""));
  }
  r->respond(jsonResponse(200, d_.state.registry().instanceJson(*inst)));
}

void ControlApi::registerInstance(const SimpleRequest& req, const std::string& svc,
                                  const std::string& id, const std::string& actor,
                                  const ResponderSharedPtr& r) {
  std::string error;
  std::optional<json> body = parseBody(req, false, error);
  if (!body) return r->respond(jsonError(400, error));
  error = checkKeys(*body, {"address", "weight", "ttl", "metadata"});
  if (!error.empty()) return r->respond(jsonError(400, error));

  InstanceSpec spec;
  spec.ttl = d_.default_ttl;
  auto address = body->find("address");
  if (address == body->end() || !address->is_string()) {
    return r->respond(jsonError(400, "\"address\" is required: a string \"host:port\""));
  }
  std::optional<config::Address> parsed = config::parseAddress(address->get<std::string>());
  if (!parsed) {
    return r->respond(jsonError(400,
                                "\"address\" must be host:port with a port from 1 to 65535, "
                                "got \"" +
                                    address->get<std::string>() + "\""));
  }
  spec.address = *parsed;
  if (auto w = body->find("weight"); w != body->end()) {
    if (!w->is_number_integer() || w->get<int64_t>() < 0 || w->get<int64_t>() > kMaxWeight) {
      return r->respond(jsonError(400, "\"weight\" must be a whole number from 0 to " +
                                           std::to_string(kMaxWeight) + ", got " + w->dump()));
    }
    spec.weight = w->get<uint32_t>();
  }
  if (auto t = body->find("ttl"); t != body->end()) {
    std::optional<config::Duration> ttl;
    if (t->is_string()) ttl = config::parseDuration(t->get<std::string>());
    if (!ttl || *ttl < kMinTtl || *ttl > kMaxTtl) {
      return r->respond(jsonError(400,
                                  "\"ttl\" must be a duration from 10ms to 24h such as "
                                  "\"30s\", got " +
                                      t->dump()));
    }
    spec.ttl = *ttl;
  }
  if (auto md = body->find("metadata"); md != body->end() && !md->is_null()) {
    if (!md->is_object()) {
      return r->respond(jsonError(400, "\"metadata\" must be a JSON object, got " + md->dump()));
    }
    if (md->dump().size() > kMaxMetadataBytes) {
      return r->respond(jsonError(
          400, "\"metadata\" is larger than " + std::to_string(kMaxMetadataBytes) + " bytes"));
    }
    spec.metadata = *md;
  }

  const std::string description = describeInstance(spec);
  Registry::UpsertResult result = d_.state.registry().upsert(svc, id, std::move(spec));
  d_.on_registry_changed();
  const Instance* inst = d_.state.registry().findInstance(svc, id);
  json out = {{"service", svc}, {"instance", d_.state.registry().instanceJson(*inst)}};
  const int status = result.created ? 201 : 200;
  if (!result.changed) return respondWhenDurable(status, std::move(out), r);
  commitAndRespond(
      actor,
      std::string(result.created ? "register " : "update ") + svc + "/" + id + " " + description,
      status, std::move(out), r);
}

void ControlApi::heartbeat(const SimpleRequest& req, const std::string& svc, const std::string& id,
                           const std::string& actor, const ResponderSharedPtr& r) {
  std::string error;
  std::optional<json> body = parseBody(req, true, error);
  if (!body) return r->respond(jsonError(400, error));
  error = checkKeys(*body, {"status"});
  if (!error.empty()) return r->respond(jsonError(400, error));
  std::optional<InstanceStatus> status;
  if (auto s = body->find("status"); s != body->end() && !s->is_null()) {
    if (s->is_string()) status = parseReportedStatus(s->get<std::string>());
    if (!status) {
      return r->respond(jsonError(400, "\"status\" must be \"UP\" or \"DOWN\", got " + s->dump()));
    }
  }
  InstanceStatus before = InstanceStatus::Unknown;
  Registry::HeartbeatResult result = d_.state.registry().heartbeat(svc, id, status, &before);
  if (result == Registry::HeartbeatResult::NotFound) {
    return r->respond(jsonError(404, "no instance \"" + id + "\" in service \"" + svc +
                                         "\"; register it first (PUT /v1/services/" + svc +
                                         "/instances/" + id + ")"));
  }
  const Instance* inst = d_.state.registry().findInstance(svc, id);
  if (result == Registry::HeartbeatResult::Renewed) {
    // A renewal only moves this instance's deadline later: the TTL timer may fire early and
    // re-arm itself, which is cheaper than a scan of the registry per heartbeat.
    // A plain renewal changes no endpoint: not versioned, not persisted (see README).
    // The hot path (10,000 instances every 10 s is 1,000 a second): the answer is written as
    // text, the same document as the json below with its keys in the same order.
    std::string text;
    text.reserve(512);
    text += "{\"instance\":";
    d_.state.registry().appendInstanceJson(text, *inst);
    text += ",\"service\":";
    appendJsonString(text, svc);
    text += ",\"version\":";
    appendJsonString(text, std::to_string(d_.state.version()));
    text += "}\n";
    return r->respond(http::SimpleResponse::json(200, std::move(text)));
  }
  json out = {{"service", svc}, {"instance", d_.state.registry().instanceJson(*inst)}};
  d_.on_registry_changed();
  commitAndRespond(actor,
                   "heartbeat " + svc + "/" + id + " " + std::string(toString(before)) + " -> " +
                       std::string(toString(inst->status())),
                   200, std::move(out), r);
}

void ControlApi::deregister(const std::string& svc, const std::string& id, const std::string& actor,
                            const ResponderSharedPtr& r) {
  if (!d_.state.registry().remove(svc, id)) {
    return r->respond(jsonError(404, "no instance \"" + id + "\" in service \"" + svc + "\""));
  }
  d_.on_registry_changed();
  commitAndRespond(actor, "deregister " + svc + "/" + id, 200,
                   {{"service", svc}, {"instance", id}, {"deregistered", true}}, r);
}

json ControlApi::clusterView(const std::string& name) const {
  const config::Cluster* policy = d_.state.findPolicy(name);
  std::optional<config::Cluster> effective = d_.state.cluster(name);
  return {
      {"name", name},
      {"source", policy != nullptr ? "policy" : "registry"},
      {"policy", policy != nullptr ? config::toJson(*policy) : json(nullptr)},
      {"instances", d_.state.registry().findService(name) != nullptr
                        ? d_.state.registry().findService(name)->instances.size()
                        : 0},
      {"cluster", effective ? config::toJson(*effective) : json(nullptr)},
  };
}

void ControlApi::listClusters(const ResponderSharedPtr& r) {
  json out = json::array();
  for (const config::Cluster& c : d_.state.clusters()) out.push_back(clusterView(c.name));
  r->respond(jsonResponse(200, out));
}

void ControlApi::getCluster(const std::string& name, const ResponderSharedPtr& r) {
  if (!d_.state.cluster(name)) {
    return r->respond(
        jsonError(404, "no cluster \"" + name + "\" (neither a policy nor registered instances)"));
  }
  r->respond(jsonResponse(200, clusterView(name)));
}

void ControlApi::putPolicy(const SimpleRequest& req, const std::string& name,
                           const std::string& actor, const ResponderSharedPtr& r) {
  std::vector<std::string> errors;
  std::optional<config::Cluster> policy = parsePolicy(req.body, name, "<request body>", errors);
  if (!policy) {
    std::string joined;
    for (const std::string& e : errors) joined += (joined.empty() ? "" : "; ") + e;
    http::SimpleResponse resp =
        jsonResponse(400, {{"error", "invalid cluster policy: " + joined}, {"errors", errors}});
    return r->respond(std::move(resp));
  }
  const bool created = d_.state.findPolicy(name) == nullptr;
  json policy_json = config::toJson(*policy);
  json out = {{"name", name}, {"policy", policy_json}};
  if (!d_.state.setPolicy(std::move(*policy))) return respondWhenDurable(200, std::move(out), r);
  commitAndRespond(
      actor,
      std::string(created ? "policy set " : "policy update ") + name + " " + policy_json.dump(),
      created ? 201 : 200, std::move(out), r);
}

void ControlApi::deletePolicy(const std::string& name, const std::string& actor,
                              const ResponderSharedPtr& r) {
  if (!d_.state.removePolicy(name)) {
    return r->respond(jsonError(404, "no policy for cluster \"" + name + "\""));
  }
  commitAndRespond(actor, "policy delete " + name, 200, {{"name", name}, {"deleted", true}}, r);
}

void ControlApi::ack(const SimpleRequest& req, const ResponderSharedPtr& r) {
  std::string error;
  std::optional<json> body = parseBody(req, false, error);
  if (!body) return r->respond(jsonError(400, error));
  DiscoveryService::AckResult result = d_.discovery.ack(*body);
  r->respond(jsonResponse(result.status, result.body));
}

void ControlApi::history(const SimpleRequest& req, const ResponderSharedPtr& r) {
  const auto& entries = d_.state.history();
  size_t limit = entries.size();
  const std::string l = http::queryParam(req.query, "limit");
  if (!l.empty()) {
    char* end = nullptr;
    const unsigned long v = std::strtoul(l.c_str(), &end, 10);
    if (*end != '\0' || v == 0) {
      return r->respond(jsonError(400, "\"limit\" must be a positive whole number"));
    }
    limit = std::min<size_t>(limit, v);
  }
  json out = json::array();
  for (size_t i = entries.size() - limit; i < entries.size(); ++i) {
    const HistoryEntry& h = entries[i];
    out.push_back({{"version", std::to_string(h.version)},
                   {"time", h.time},
                   {"actor", h.actor},
                   {"change", h.change}});
  }
  r->respond(jsonResponse(200, out));
}

void ControlApi::commitAndRespond(const std::string& actor, std::string change, int status,
                                  json body, const ResponderSharedPtr& r) {
  spdlog::info("{} by {}", change, actor);
  const uint64_t version = d_.state.commit(actor, std::move(change));
  d_.on_committed(version);
  body["version"] = std::to_string(version);
  d_.persister.whenDurable(version, [r, status, body = std::move(body)](const std::string& error) {
    if (!error.empty()) {
      r->respond(jsonError(503, "the change is applied in memory but could not be persisted (" +
                                    error +
                                    "); it will be retried, so it may or may not survive "
                                    "a restart"));
      return;
    }
    r->respond(jsonResponse(status, body));
  });
}

void ControlApi::respondWhenDurable(int status, json body, const ResponderSharedPtr& r) {
  const uint64_t version = d_.state.version();
  body["version"] = std::to_string(version);
  d_.persister.whenDurable(version, [r, status, body = std::move(body)](const std::string& error) {
    if (!error.empty()) {
      r->respond(jsonError(503, "the state could not be persisted (" + error + ")"));
      return;
    }
    r->respond(jsonResponse(status, body));
  });
}

}  // namespace remora::control
