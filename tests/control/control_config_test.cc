// remora-control's YAML file and tokens file.

#include "control_config.h"

#include <gtest/gtest.h>

#include "util.h"

namespace remora::control {
namespace {

TEST(ControlConfigTest, DefaultsFromAnEmptyFile) {
  ControlConfigResult r = loadControlConfigString("", "cp.yaml");
  ASSERT_TRUE(r.ok()) << r.formatErrors();
  EXPECT_EQ(r.config->listen.str(), "127.0.0.1:18000");
  EXPECT_EQ(r.config->state_file, "./remora-control.state");
  EXPECT_EQ(r.config->default_ttl, config::Duration(30000));
  EXPECT_TRUE(r.config->tokens_file.empty());
  EXPECT_EQ(r.config->discovery.debounce, config::Duration(50));
  EXPECT_EQ(r.config->discovery.max_delay, config::Duration(500));
}

TEST(ControlConfigTest, EveryKey) {
  ControlConfigResult r = loadControlConfigString(R"(
listen: 0.0.0.0:9000
state_file: /var/lib/remora/state
auth: { tokens_file: /etc/remora/tokens }
default_ttl: 10s
log_level: DEBUG
history_limit: 50
discovery: { debounce: 20ms, max_delay: 200ms, heartbeat_interval: 5s }
clusters:
  - name: orders
    lb_policy: least_request
  - name: users
    endpoints: [{ address: 10.0.0.1:80 }]
)",
                                                  "cp.yaml");
  ASSERT_TRUE(r.ok()) << r.formatErrors();
  const ControlConfig& c = *r.config;
  EXPECT_EQ(c.listen.str(), "0.0.0.0:9000");
  EXPECT_EQ(c.tokens_file, "/etc/remora/tokens");
  EXPECT_EQ(c.default_ttl, config::Duration(10000));
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.history_limit, 50u);
  EXPECT_EQ(c.discovery.heartbeat_interval, config::Duration(5000));
  ASSERT_EQ(c.clusters.size(), 2u);
  EXPECT_EQ(c.clusters[0].lb_policy, config::LbPolicy::LeastRequest);
  EXPECT_TRUE(c.clusters[0].endpoints.empty()) << "endpoints are optional in policies";
}

TEST(ControlConfigTest, EveryErrorWithItsPosition) {
  ControlConfigResult r = loadControlConfigString(R"(listen: nowhere
default_ttl: -5s
colour: blue
clusters:
  - name: orders
    lb_policy: fastest
  - name: orders
)",
                                                  "cp.yaml");
  ASSERT_FALSE(r.ok());
  const std::string all = r.formatErrors();
  EXPECT_NE(all.find("cp.yaml:1:9: \"listen\" must be host:port"), std::string::npos) << all;
  EXPECT_NE(all.find("cp.yaml:2:14:"), std::string::npos) << all;
  EXPECT_NE(all.find("cp.yaml:3:1: unknown key \"colour\""), std::string::npos) << all;
  EXPECT_NE(all.find("cp.yaml:6:16: unknown lb_policy \"fastest\""), std::string::npos) << all;
  EXPECT_EQ(r.errors.size(), 4u) << all;
}

TEST(ControlConfigTest, DuplicateClusterAndBadYaml) {
  ControlConfigResult r =
      loadControlConfigString("clusters:\n  - name: a\n  - name: a\n", "cp.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.formatErrors().find("cp.yaml:3:5: cluster \"a\" is defined twice"), std::string::npos)
      << r.formatErrors();
  r = loadControlConfigString("listen: [", "cp.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.formatErrors().find("invalid YAML"), std::string::npos);
}

TEST(TokensTest, ReadsNameTokenLines) {
  itest::TempDir dir;
  auto path = dir.writeFile("tokens", "# operators\nalice: s3cret\n\nci:tok-2\n");
  std::vector<std::string> errors;
  auto tokens = loadTokens(path.string(), errors);
  ASSERT_TRUE(tokens.has_value()) << (errors.empty() ? "" : errors[0]);
  ASSERT_EQ(tokens->size(), 2u);
  EXPECT_EQ((*tokens)[0].name, "alice");
  EXPECT_EQ((*tokens)[0].token, "s3cret");
  EXPECT_EQ((*tokens)[1].name, "ci");
}

TEST(TokensTest, RefusesBadLinesAndEmptyFiles) {
  itest::TempDir dir;
  std::vector<std::string> errors;
  EXPECT_FALSE(loadTokens(dir.writeFile("a", "justatoken\n").string(), errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find(":1: expected \"name:token\""), std::string::npos) << errors[0];
  errors.clear();
  EXPECT_FALSE(loadTokens(dir.writeFile("b", "# nothing\n").string(), errors));
  errors.clear();
  EXPECT_FALSE(loadTokens(dir.writeFile("c", "a:x\nb:x\n").string(), errors));
  errors.clear();
  EXPECT_FALSE(loadTokens((dir / "missing").string(), errors));
}

}  // namespace
}  // namespace remora::control
