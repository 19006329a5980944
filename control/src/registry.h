#pragma once

// The service registry: instances register with a TTL and renew it with heartbeats.
//
//   UP/DOWN (as last reported) --no heartbeat for 1 TTL--> UNKNOWN --3 TTLs in all--> removed
//
// Only UP instances (weight > 0) become endpoints. A heartbeat on an UNKNOWN instance brings it
// back with the status it last reported. Time comes from a TimeSource so tests drive the state
// machine with a fake clock; nothing here does I/O.

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "remora/config/config.h"
#include "remora/time_source.h"

namespace remora::control {

enum class InstanceStatus { Up, Down, Unknown };
std::string_view toString(InstanceStatus status);
// "UP" or "DOWN" (case-insensitive): what a client may report. UNKNOWN is the registry's call.
std::optional<InstanceStatus> parseReportedStatus(std::string_view s);

using WallTime = std::chrono::system_clock::time_point;
// "2024-05-01T12:00:00.123Z".
std::string formatWallTime(WallTime t);

// What a registration carries.
struct InstanceSpec {
  config::Address address;
  uint32_t weight = 1;
  config::Duration ttl{30000};
  nlohmann::json metadata = nlohmann::json::object();

  friend bool operator==(const InstanceSpec&, const InstanceSpec&) = default;
};

struct Instance {
  std::string id;
  InstanceSpec spec;
  InstanceStatus reported = InstanceStatus::Up;  // UP or DOWN, as last reported
  bool lapsed = false;                           // TTL ran out: shown as UNKNOWN
  MonotonicTime renewed_at;                      // last registration or heartbeat
  WallTime registered_at;
  WallTime renewed_wall;

  InstanceStatus status() const { return lapsed ? InstanceStatus::Unknown : reported; }
  bool isEndpoint() const { return status() == InstanceStatus::Up && spec.weight > 0; }
};

struct Service {
  // By id, so every listing is in id order; std::less<> finds by string_view without a copy.
  std::map<std::string, Instance, std::less<>> instances;
  // Changes whenever the service's endpoints may have changed (an instance added, removed,
  // updated or changing status; not a plain renewal), and is never reused by a later service of
  // the same name: the control plane re-serializes a cluster only when this moved.
  uint64_t revision = 0;
};

// Instances expire after one TTL and are removed after this many.
inline constexpr int kRemoveAfterTtls = 3;

class Registry {
 public:
  explicit Registry(const TimeSource& time) : time_(time) {}

  struct UpsertResult {
    bool created = false;
    bool changed = false;  // false: same spec, already UP -> a plain renewal
  };
  // Registers or updates an instance; it is UP and its TTL starts now.
  UpsertResult upsert(const std::string& service, const std::string& id, InstanceSpec spec);

  enum class HeartbeatResult { NotFound, Renewed, StatusChanged };
  // Renews the TTL; `status` (UP/DOWN) replaces the reported status when given. `before`, when
  // given, receives the status the instance had (unchanged on NotFound).
  HeartbeatResult heartbeat(const std::string& service, const std::string& id,
                            std::optional<InstanceStatus> status, InstanceStatus* before = nullptr);

  // False if there was no such instance.
  bool remove(const std::string& service, const std::string& id);

  struct Transition {
    std::string service;
    std::string id;
    InstanceStatus from;
    bool removed = false;  // else: became UNKNOWN
    config::Duration ttl;
  };
  // Applies every TTL deadline that has passed, oldest first.
  std::vector<Transition> expire();
  // The next moment expire() would change something; nullopt when nothing can expire.
  std::optional<MonotonicTime> nextDeadline() const;

  using ServiceMap = std::map<std::string, Service, std::less<>>;
  const ServiceMap& services() const { return services_; }
  const Service* findService(std::string_view name) const;
  const Instance* findInstance(std::string_view service, std::string_view id) const;
  size_t instanceCount() const;

  // UP instances with weight > 0, in id order, one per address (the first id wins).
  std::vector<config::Endpoint> endpoints(std::string_view service) const;

  // The REST view of an instance, as JSON text appended to `out` (keys in name order, as
  // nlohmann::json would write them) and as a tree. The text is the heartbeat answer's fast
  // path: 1,000 renewals a second must not each build and free a JSON tree.
  void appendInstanceJson(std::string& out, const Instance& instance) const;
  nlohmann::json instanceJson(const Instance& instance) const;

  // Persistence: everything but the heartbeat clocks, which restart on load (see load()).
  // appendStateJson() writes the JSON text directly (the write path); toStateJson() is the same
  // as a tree.
  void appendStateJson(std::string& out) const;
  nlohmann::json toStateJson() const;
  // Replaces the content. Every TTL clock restarts now, since monotonic time does not survive a
  // restart and heartbeats are not persisted: a live instance keeps heartbeating and never
  // notices; an UNKNOWN one stays UNKNOWN and is removed 2 TTLs after the restart.
  bool loadStateJson(const nlohmann::json& j, std::string& error);

 private:
  Instance* find(const std::string& service, const std::string& id);
  void touch(Service& service) { service.revision = ++last_revision_; }

  const TimeSource& time_;
  ServiceMap services_;
  uint64_t last_revision_ = 0;
};

}  // namespace remora::control
