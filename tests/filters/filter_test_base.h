#pragma once

// Shared fixture of the filter tests: a real Snapshot built from inline YAML whose resilience state
// (token buckets, bulkheads) runs on a fake clock.

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "mocks/fake_time_source.h"
#include "remora/config/config.h"
#include "runtime.h"
#include "snapshot.h"
#include "stats.h"

namespace remora {

class FilterTestBase : public ::testing::Test {
 protected:
  // Builds the snapshot, failing the test (fatally, from the caller's ASSERT_NO_FATAL_FAILURE) if
  // the YAML does not load.
  void buildSnapshot(const std::string& yaml) {
    config::LoadResult r = config::loadString(yaml, "test.yaml");
    ASSERT_TRUE(r.ok()) << r.formatErrors();
    std::string error;
    snapshot_ = Snapshot::build(r.config, 1, "file", stats_, runtime_, error);
    ASSERT_NE(snapshot_, nullptr) << error;
  }

  const RouteInfo& route(std::string_view name) const {
    for (const ListenerInfo& listener : snapshot_->listeners()) {
      for (const RouteInfo& route : listener.routes) {
        if (route.config->name == name) return route;
      }
    }
    ADD_FAILURE() << "no route " << name;
    std::abort();
  }

  const ClusterInfo& cluster(std::string_view name) const {
    const ClusterInfo* c = snapshot_->findCluster(name);
    if (c == nullptr) {
      ADD_FAILURE() << "no cluster " << name;
      std::abort();
    }
    return *c;
  }

  FakeTimeSource time_;
  StatsStore stats_;
  RuntimeRegistry runtime_{stats_, time_};
  SnapshotConstSharedPtr snapshot_;
};

}  // namespace remora
