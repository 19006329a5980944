#include "stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>
#include <vector>

namespace remora {
namespace {

TEST(StatsTest, StatusCountersRenderPerCode) {
  StatsStore s;
  s.listener("ingress").downstream_requests.inc(200);
  s.listener("ingress").downstream_requests.inc(200);
  s.listener("ingress").downstream_requests.inc(404);
  std::string out = s.renderPrometheus();
  EXPECT_NE(out.find("remora_downstream_requests_total{listener=\"ingress\",code=\"200\"} 2\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("remora_downstream_requests_total{listener=\"ingress\",code=\"404\"} 1\n"),
            std::string::npos);
  EXPECT_NE(out.find("# TYPE remora_downstream_requests_total counter"), std::string::npos);
}

TEST(StatsTest, SameNameSameObject) {
  StatsStore s;
  EXPECT_EQ(&s.cluster("a"), &s.cluster("a"));
  EXPECT_NE(&s.cluster("a"), &s.cluster("b"));
}

TEST(StatsTest, HistogramIsCumulativeWithSumAndCount) {
  StatsStore s;
  auto& h = s.cluster("c").request_duration;
  h.record(std::chrono::microseconds(300));     // <= 0.0005
  h.record(std::chrono::microseconds(20000));   // <= 0.025
  h.record(std::chrono::microseconds(20000000));  // +Inf
  std::string out = s.renderPrometheus();
  EXPECT_NE(out.find("remora_request_duration_seconds_bucket{cluster=\"c\",le=\"0.0005\"} 1\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("remora_request_duration_seconds_bucket{cluster=\"c\",le=\"0.025\"} 2\n"),
            std::string::npos);
  EXPECT_NE(out.find("remora_request_duration_seconds_bucket{cluster=\"c\",le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(out.find("remora_request_duration_seconds_count{cluster=\"c\"} 3\n"),
            std::string::npos);
  EXPECT_NEAR(s.cluster("c").request_duration.sumSeconds(), 20.0203, 1e-9);
  EXPECT_NE(out.find("remora_request_duration_seconds_sum{cluster=\"c\"} 20.020300\n"),
            std::string::npos)
      << out;
}

TEST(StatsTest, LabelValuesAreEscaped) {
  StatsStore s;
  s.route("we\"ird\\name").rate_limited.inc();
  std::string out = s.renderPrometheus();
  EXPECT_NE(out.find("remora_rate_limited_total{route=\"we\\\"ird\\\\name\"} 1"),
            std::string::npos)
      << out;
}

TEST(StatsTest, ConfigUpdatesBySourceAndResult) {
  StatsStore s;
  s.recordConfigUpdate("file", true);
  s.recordConfigUpdate("file", false);
  s.recordConfigUpdate("file", true);
  s.configVersion().set(7);
  std::string out = s.renderPrometheus();
  EXPECT_NE(out.find("remora_config_updates_total{source=\"file\",result=\"ack\"} 2"),
            std::string::npos);
  EXPECT_NE(out.find("remora_config_updates_total{source=\"file\",result=\"nack\"} 1"),
            std::string::npos);
  EXPECT_NE(out.find("remora_config_version 7\n"), std::string::npos);
}

TEST(StatsTest, CountersAreExactUnderConcurrency) {
  StatsStore s;
  ClusterStats& c = s.cluster("x");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        c.upstream_requests.inc(200);
        c.upstream_retries.inc();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.upstream_requests.value(200), 400000u);
  EXPECT_EQ(c.upstream_retries.value(), 400000u);
}

}  // namespace
}  // namespace remora
