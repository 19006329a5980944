#include <gtest/gtest.h>

#include "remora/config/config.h"

namespace remora::config {
namespace {

TEST(ParseDurationTest, AcceptsEveryUnit) {
  EXPECT_EQ(parseDuration("250ms"), Duration(250));
  EXPECT_EQ(parseDuration("2s"), Duration(2000));
  EXPECT_EQ(parseDuration("1m"), Duration(60000));
  EXPECT_EQ(parseDuration("1h"), Duration(3600000));
  EXPECT_EQ(parseDuration("0s"), Duration(0));
  EXPECT_EQ(parseDuration("0ms"), Duration(0));
  EXPECT_EQ(parseDuration("8760h"), Duration(kMaxDurationMs));
}

TEST(ParseDurationTest, AcceptsExactFractions) {
  EXPECT_EQ(parseDuration("1.5s"), Duration(1500));
  EXPECT_EQ(parseDuration("0.25s"), Duration(250));
  EXPECT_EQ(parseDuration("1.001s"), Duration(1001));
  EXPECT_EQ(parseDuration("1.5m"), Duration(90000));
  EXPECT_EQ(parseDuration("0.5h"), Duration(1800000));
  EXPECT_EQ(parseDuration("2.0ms"), Duration(2));
}

TEST(ParseDurationTest, RejectsEverythingElse) {
  for (const char* bad : {"",
                          "s",
                          "ms",
                          "5",
                          "0",
                          "-1s",
                          "-0s",
                          "+1s",
                          "1.5ms",
                          "1.0001s",
                          "1.s",
                          ".5s",
                          "1 s",
                          " 1s",
                          "1s ",
                          "1sec",
                          "1S",
                          "1d",
                          "1us",
                          "abc",
                          "1e3ms",
                          "1,5s",
                          "8761h",
                          "99999999999999h",
                          "1.1234567890s",
                          "0x10s",
                          "1s2"}) {
    EXPECT_EQ(parseDuration(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(FormatDurationTest, UsesTheLargestExactUnit) {
  EXPECT_EQ(formatDuration(Duration(0)), "0s");
  EXPECT_EQ(formatDuration(Duration(250)), "250ms");
  EXPECT_EQ(formatDuration(Duration(1500)), "1500ms");
  EXPECT_EQ(formatDuration(Duration(2000)), "2s");
  EXPECT_EQ(formatDuration(Duration(90000)), "90s");
  EXPECT_EQ(formatDuration(Duration(60000)), "1m");
  EXPECT_EQ(formatDuration(Duration(5400000)), "90m");
  EXPECT_EQ(formatDuration(Duration(3600000)), "1h");
}

TEST(FormatDurationTest, RoundTripsThroughParse) {
  for (int64_t ms : {0, 1, 999, 1000, 1001, 59999, 60000, 3599999, 3600000, 7200000}) {
    EXPECT_EQ(parseDuration(formatDuration(Duration(ms))), Duration(ms)) << ms;
  }
}

TEST(ParseAddressTest, AcceptsHostAndPort) {
  auto a = parseAddress("127.0.0.1:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);

  a = parseAddress("orders.internal:1");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "orders.internal");
  EXPECT_EQ(a->port, 1);

  a = parseAddress("0.0.0.0:65535");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->port, 65535);
}

TEST(ParseAddressTest, AcceptsBracketedIpv6) {
  auto a = parseAddress("[::1]:80");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 80);

  a = parseAddress("[2001:db8::42]:443");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "2001:db8::42");

  a = parseAddress("[fe80::1%eth0]:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "fe80::1%eth0");
}

TEST(ParseAddressTest, RejectsEverythingElse) {
  for (const char* bad : {"",           "host",          "host:",   ":80",        "host:0",
                          "host:65536", "host:99999999", "host:-1", "host:+80",   "host:80x",
                          "host: 80",   " host:80",      "::1:80",  "::1",        "[::1]",
                          "[::1]80",    "[::1]:",        "[]:80",   "[zz::1]:80", "[1.2.3.4]:80",
                          "[::1]:0",    "[fe80::1%]:80", "a b:80",  "a/b:80",     "[::1:80"}) {
    EXPECT_EQ(parseAddress(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(AddressTest, StrAddsBracketsForIpv6) {
  EXPECT_EQ((Address{"127.0.0.1", 80}.str()), "127.0.0.1:80");
  EXPECT_EQ((Address{"::1", 80}.str()), "[::1]:80");
  for (const char* s : {"127.0.0.1:15001", "[::1]:80", "localhost:9", "[fe80::1%eth0]:1"}) {
    EXPECT_EQ(parseAddress(s)->str(), s);
  }
}

TEST(LbPolicyTest, NamesRoundTrip) {
  for (LbPolicy p : {LbPolicy::RoundRobin, LbPolicy::WeightedRoundRobin, LbPolicy::Random,
                     LbPolicy::LeastRequest}) {
    EXPECT_EQ(parseLbPolicy(toString(p)), p);
  }
  EXPECT_EQ(toString(LbPolicy::WeightedRoundRobin), "weighted_round_robin");
  EXPECT_EQ(toString(LbPolicy::LeastRequest), "least_request");
  EXPECT_EQ(parseLbPolicy("Round_Robin"), std::nullopt);
}

// Built field by field: brace-initialising the nested SourceLoc makes GCC 12 warn
// (-Wmaybe-uninitialized, a false positive in its inlined std::string copy).
ConfigError configError(std::string file, int line, int column, std::string reason) {
  ConfigError e;
  e.loc.file = std::move(file);
  e.loc.line = line;
  e.loc.column = column;
  e.reason = std::move(reason);
  return e;
}

TEST(ConfigErrorTest, FormatLeavesOutUnknownParts) {
  const auto format = [](std::string file, int line, int column) {
    return configError(std::move(file), line, column, "boom").format();
  };
  EXPECT_EQ(format("a.yaml", 12, 18), "a.yaml:12:18: boom");
  EXPECT_EQ(format("a.yaml", 12, 0), "a.yaml:12: boom");
  EXPECT_EQ(format("a.yaml", 0, 0), "a.yaml: boom");
  EXPECT_EQ(format("", 3, 4), "3:4: boom");
  EXPECT_EQ(format("", 0, 0), "boom");
}

TEST(LoadResultTest, FormatErrorsPutsOneErrorPerLine) {
  LoadResult r;
  EXPECT_EQ(r.formatErrors(), "");
  r.errors.push_back(configError("f", 1, 2, "one"));
  r.errors.push_back(configError("f", 3, 4, "two"));
  EXPECT_EQ(r.formatErrors(), "f:1:2: one\nf:3:4: two\n");
  EXPECT_FALSE(r.ok());
}

TEST(ConfigTest, FindCluster) {
  Config c;
  c.clusters.resize(2);
  c.clusters[0].name = "a";
  c.clusters[1].name = "b";
  ASSERT_NE(c.findCluster("b"), nullptr);
  EXPECT_EQ(c.findCluster("b"), &c.clusters[1]);
  EXPECT_EQ(c.findCluster("c"), nullptr);
  EXPECT_EQ(c.findCluster(""), nullptr);
}

}  // namespace
}  // namespace remora::config
