#include "registry.h"

#include <algorithm>
#include <ctime>
#include <set>

#include "json_text.h"

namespace remora::control {

namespace {

MonotonicTime expiresAt(const Instance& i) { return i.renewed_at + i.spec.ttl; }
MonotonicTime removedAt(const Instance& i) { return i.renewed_at + kRemoveAfterTtls * i.spec.ttl; }

}  // namespace

std::string_view toString(InstanceStatus status) {
  switch (status) {
    case InstanceStatus::Up:
      return "UP";
    case InstanceStatus::Down:
      return "DOWN";
    case InstanceStatus::Unknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

std::optional<InstanceStatus> parseReportedStatus(std::string_view s) {
  std::string upper(s);
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  if (upper == "UP") return InstanceStatus::Up;
  if (upper == "DOWN") return InstanceStatus::Down;
  return std::nullopt;
}

std::string formatWallTime(WallTime t) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  const int year = tm.tm_year + 1900;
  if (ms < 0 || year > 9999) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
    return buf;
  }
  // Digit by digit: snprintf was a tenth of a heartbeat's cost (two timestamps per answer).
  std::string out = "0000-00-00T00:00:00.000Z";
  auto put = [&out](size_t pos, int value, int width) {
    for (int i = width - 1; i >= 0; --i) {
      out[pos + static_cast<size_t>(i)] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
  };
  put(0, year, 4);
  put(5, tm.tm_mon + 1, 2);
  put(8, tm.tm_mday, 2);
  put(11, tm.tm_hour, 2);
  put(14, tm.tm_min, 2);
  put(17, tm.tm_sec, 2);
  put(20, static_cast<int>(ms % 1000), 3);
  return out;
}

Instance* Registry::find(const std::string& service, const std::string& id) {
  auto s = services_.find(service);
  if (s == services_.end()) return nullptr;
  auto i = s->second.instances.find(id);
  return i == s->second.instances.end() ? nullptr : &i->second;
}

const Service* Registry::findService(std::string_view name) const {
  auto s = services_.find(name);
  return s == services_.end() ? nullptr : &s->second;
}

const Instance* Registry::findInstance(std::string_view service, std::string_view id) const {
  const Service* s = findService(service);
  if (s == nullptr) return nullptr;
  auto i = s->instances.find(id);
  return i == s->instances.end() ? nullptr : &i->second;
}

size_t Registry::instanceCount() const {
  size_t n = 0;
  for (const auto& [name, s] : services_) n += s.instances.size();
  return n;
}

Registry::UpsertResult Registry::upsert(const std::string& service, const std::string& id,
                                        InstanceSpec spec) {
  UpsertResult result;
  const WallTime wall = std::chrono::system_clock::now();
  Instance* existing = find(service, id);
  if (existing == nullptr) {
    Instance inst;
    inst.id = id;
    inst.spec = std::move(spec);
    inst.renewed_at = time_.now();
    inst.registered_at = wall;
    inst.renewed_wall = wall;
    Service& s = services_[service];
    s.instances.emplace(id, std::move(inst));
    touch(s);
    result.created = true;
    result.changed = true;
    return result;
  }
  result.changed = !(existing->spec == spec) || existing->status() != InstanceStatus::Up;
  if (result.changed) touch(services_.find(service)->second);
  existing->spec = std::move(spec);
  existing->reported = InstanceStatus::Up;
  existing->lapsed = false;
  existing->renewed_at = time_.now();
  existing->renewed_wall = wall;
  return result;
}

Registry::HeartbeatResult Registry::heartbeat(const std::string& service, const std::string& id,
                                              std::optional<InstanceStatus> status,
                                              InstanceStatus* before) {
  Instance* inst = find(service, id);
  if (inst == nullptr) return HeartbeatResult::NotFound;
  const InstanceStatus was = inst->status();
  if (before != nullptr) *before = was;
  if (status) inst->reported = *status;
  inst->lapsed = false;
  inst->renewed_at = time_.now();
  inst->renewed_wall = std::chrono::system_clock::now();
  if (inst->status() == was) return HeartbeatResult::Renewed;
  touch(services_.find(service)->second);
  return HeartbeatResult::StatusChanged;
}

bool Registry::remove(const std::string& service, const std::string& id) {
  auto s = services_.find(service);
  if (s == services_.end()) return false;
  if (s->second.instances.erase(id) == 0) return false;
  if (s->second.instances.empty()) {
    services_.erase(s);
  } else {
    touch(s->second);
  }
  return true;
}

std::vector<Registry::Transition> Registry::expire() {
  const MonotonicTime now = time_.now();
  struct Due {
    MonotonicTime at;
    Transition t;
  };
  std::vector<Due> due;
  for (auto& [name, service] : services_) {
    for (auto& [id, inst] : service.instances) {
      if (now >= removedAt(inst)) {
        due.push_back({removedAt(inst), {name, id, inst.status(), true, inst.spec.ttl}});
      } else if (!inst.lapsed && now >= expiresAt(inst)) {
        due.push_back({expiresAt(inst), {name, id, inst.status(), false, inst.spec.ttl}});
      }
    }
  }
  std::stable_sort(due.begin(), due.end(), [](const Due& a, const Due& b) { return a.at < b.at; });
  std::vector<Transition> out;
  out.reserve(due.size());
  for (Due& d : due) {
    if (d.t.removed) {
      remove(d.t.service, d.t.id);
    } else {
      find(d.t.service, d.t.id)->lapsed = true;
      touch(services_.find(d.t.service)->second);
    }
    out.push_back(std::move(d.t));
  }
  return out;
}

std::optional<MonotonicTime> Registry::nextDeadline() const {
  std::optional<MonotonicTime> next;
  for (const auto& [name, service] : services_) {
    for (const auto& [id, inst] : service.instances) {
      const MonotonicTime at = inst.lapsed ? removedAt(inst) : expiresAt(inst);
      if (!next || at < *next) next = at;
    }
  }
  return next;
}

std::vector<config::Endpoint> Registry::endpoints(std::string_view service) const {
  std::vector<config::Endpoint> out;
  const Service* s = findService(service);
  if (s == nullptr) return out;
  std::set<std::string> seen;
  for (const auto& [id, inst] : s->instances) {
    if (!inst.isEndpoint()) continue;
    if (!seen.insert(inst.spec.address.str()).second) continue;
    config::Endpoint e;
    e.address = inst.spec.address;
    e.weight = inst.spec.weight;
    out.push_back(std::move(e));
  }
  return out;
}

void Registry::appendInstanceJson(std::string& out, const Instance& inst) const {
  const auto since = std::chrono::duration_cast<config::Duration>(time_.now() - inst.renewed_at);
  out += "{\"address\":";
  appendJsonString(out, inst.spec.address.str());
  out += ",\"id\":";
  appendJsonString(out, inst.id);
  out += ",\"last_heartbeat\":";
  appendJsonString(out, formatWallTime(inst.renewed_wall));
  out += ",\"metadata\":";
  out += inst.spec.metadata.is_object() && inst.spec.metadata.empty() ? "{}"
                                                                      : inst.spec.metadata.dump();
  out += ",\"registered_at\":";
  appendJsonString(out, formatWallTime(inst.registered_at));
  out += ",\"since_heartbeat\":";
  appendJsonString(out, config::formatDuration(std::max(since, config::Duration(0))));
  out += ",\"status\":";
  appendJsonString(out, toString(inst.status()));
  out += ",\"ttl\":";
  appendJsonString(out, config::formatDuration(inst.spec.ttl));
  out += ",\"weight\":";
  out += std::to_string(inst.spec.weight);
  out.push_back('}');
}

nlohmann::json Registry::instanceJson(const Instance& inst) const {
  // One definition of the fields: the tree is the text, parsed (listings are not hot).
  std::string text;
  appendInstanceJson(text, inst);
  return nlohmann::json::parse(text);
}

void Registry::appendStateJson(std::string& out) const {
  out.push_back('{');
  bool first_service = true;
  for (const auto& [name, service] : services_) {
    appendJsonKey(out, name, first_service);
    first_service = false;
    out += "{\"instances\":{";
    bool first = true;
    for (const auto& [id, inst] : service.instances) {
      appendJsonKey(out, id, first);
      first = false;
      // Appended piece by piece: this runs for every instance on every state write.
      out += "{\"address\":";
      appendJsonString(out, inst.spec.address.str());
      out += ",\"weight\":";
      appendInt(out, inst.spec.weight);
      out += ",\"ttl_ms\":";
      appendInt(out, inst.spec.ttl.count());
      out += ",\"metadata\":";
      if (inst.spec.metadata.is_object() && inst.spec.metadata.empty()) {
        out += "{}";
      } else {
        out += inst.spec.metadata.dump();
      }
      out += ",\"reported\":";
      appendJsonString(out, toString(inst.reported));
      out += inst.lapsed ? ",\"lapsed\":true" : ",\"lapsed\":false";
      out += ",\"registered_at_ms\":";
      appendInt(out, std::chrono::duration_cast<std::chrono::milliseconds>(
                         inst.registered_at.time_since_epoch())
                         .count());
      out.push_back('}');
    }
    out += "}}";
  }
  out.push_back('}');
}

nlohmann::json Registry::toStateJson() const {
  std::string text;
  appendStateJson(text);
  return nlohmann::json::parse(text);
}

bool Registry::loadStateJson(const nlohmann::json& j, std::string& error) {
  ServiceMap loaded;
  const MonotonicTime now = time_.now();
  const WallTime wall = std::chrono::system_clock::now();
  try {
    for (const auto& [name, service] : j.items()) {
      for (const auto& [id, ij] : service.at("instances").items()) {
        Instance inst;
        inst.id = id;
        auto address = config::parseAddress(ij.at("address").get<std::string>());
        if (!address) {
          error = "instance " + name + "/" + id + " has an invalid address";
          return false;
        }
        inst.spec.address = *address;
        inst.spec.weight = ij.at("weight").get<uint32_t>();
        inst.spec.ttl = config::Duration(ij.at("ttl_ms").get<int64_t>());
        inst.spec.metadata = ij.value("metadata", nlohmann::json::object());
        inst.reported =
            parseReportedStatus(ij.at("reported").get<std::string>()).value_or(InstanceStatus::Up);
        inst.lapsed = ij.value("lapsed", false);
        // A lapsed instance keeps the remainder of its grace period: removed 2 TTLs from now.
        inst.renewed_at = inst.lapsed ? now - inst.spec.ttl : now;
        inst.registered_at =
            WallTime(std::chrono::milliseconds(ij.value("registered_at_ms", int64_t{0})));
        inst.renewed_wall = wall;
        if (inst.spec.ttl.count() <= 0) {
          error = "instance " + name + "/" + id + " has a non-positive ttl";
          return false;
        }
        loaded[name].instances.emplace(id, std::move(inst));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    error = std::string("malformed registry: ") + e.what();
    return false;
  }
  for (auto& [name, service] : loaded) touch(service);
  services_ = std::move(loaded);
  return true;
}

}  // namespace remora::control
