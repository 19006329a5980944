#include "http/headers.h"

#include <gtest/gtest.h>

namespace remora::http {
namespace {

TEST(HeaderMapTest, GetSetRemoveCount) {
  HeaderMap h;
  h.add("a", "1");
  h.add("b", "2");
  h.add("a", "3");
  ASSERT_NE(h.get("a"), nullptr);
  EXPECT_EQ(*h.get("a"), "1");  // first wins
  EXPECT_EQ(h.count("a"), 2u);
  h.set("a", "9");
  EXPECT_EQ(h.count("a"), 1u);
  EXPECT_EQ(*h.get("a"), "9");
  h.remove("b");
  EXPECT_EQ(h.get("b"), nullptr);
  EXPECT_EQ(h.size(), 1u);
}

TEST(HeaderMapTest, CaseHelpers) {
  std::string s = "X-Request-ID";
  toLowerInPlace(s);
  EXPECT_EQ(s, "x-request-id");
  EXPECT_TRUE(equalsIgnoreCase("Chunked", "chunked"));
  EXPECT_FALSE(equalsIgnoreCase("chunked ", "chunked"));
}

TEST(HopByHopTest, RemovesRfc9110HeadersAndFraming) {
  HeaderMap h;
  for (const char* name : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                           "upgrade", "proxy-authorization", "proxy-authenticate",
                           "transfer-encoding", "content-length"}) {
    h.add(name, "x");
  }
  h.add("x-keep", "yes");
  removeHopByHopHeaders(h);
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(*h.get("x-keep"), "yes");
}

TEST(HopByHopTest, RemovesHeadersNamedInConnection) {
  HeaderMap h;
  h.add("connection", "close, X-Secret ,  x-other");
  h.add("x-secret", "1");
  h.add("x-other", "2");
  h.add("x-public", "3");
  removeHopByHopHeaders(h);
  EXPECT_EQ(h.get("x-secret"), nullptr);
  EXPECT_EQ(h.get("x-other"), nullptr);
  EXPECT_EQ(h.get("connection"), nullptr);
  ASSERT_NE(h.get("x-public"), nullptr);
}

TEST(ReasonPhraseTest, KnownAndUnknown) {
  EXPECT_EQ(reasonPhrase(200), "OK");
  EXPECT_EQ(reasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reasonPhrase(504), "Gateway Timeout");
  EXPECT_EQ(reasonPhrase(599), "Unknown");
}

TEST(SerializeTest, WritesNameColonValueCrlf) {
  HeaderMap h;
  h.add("host", "a");
  h.add("x-y", "b c");
  std::string out;
  serializeHeaders(h, out);
  EXPECT_EQ(out, "host: a\r\nx-y: b c\r\n");
}

}  // namespace
}  // namespace remora::http
