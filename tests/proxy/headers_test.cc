#include "http/headers.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace remora::http {
namespace {

TEST(HeaderMapTest, GetRemoveCount) {
  HeaderMap h;
  h.add("a", "1");
  h.add("b", "2");
  h.add("a", "3");
  ASSERT_NE(h.get("a"), nullptr);
  EXPECT_EQ(*h.get("a"), "1");  // first wins
  EXPECT_EQ(h.count("a"), 2u);
  h.remove("b");
  EXPECT_EQ(h.get("b"), nullptr);
  EXPECT_EQ(h.size(), 2u);
  h.remove("a");
  EXPECT_EQ(h.count("a"), 0u);
  EXPECT_TRUE(h.empty());
}

std::vector<std::string> names(const HeaderMap& h) {
  std::vector<std::string> out;
  for (const auto& [name, value] : h) out.push_back(name + "=" + value);
  return out;
}

TEST(HeaderMapTest, ClearAndRemoveKeepMemoryButNotEntries) {
  HeaderMap h;
  h.add("x-long", std::string(100, 'v'));
  h.add("b", "2");
  h.add("c", "3");
  const size_t bytes = h.memoryBytes();
  EXPECT_GE(bytes, 100u);
  h.remove("b");
  EXPECT_EQ(names(h), (std::vector<std::string>{"x-long=" + std::string(100, 'v'), "c=3"}));
  EXPECT_EQ(h.memoryBytes(), bytes);  // the removed entry's memory is kept
  h.clear();
  EXPECT_TRUE(h.empty());
  EXPECT_EQ(h.get("x-long"), nullptr);
  EXPECT_EQ(h.begin(), h.end());
  EXPECT_EQ(h.memoryBytes(), bytes);
  // Reused slots hold exactly what is added, nothing of what was there before.
  h.add("d", "4");
  EXPECT_EQ(names(h), (std::vector<std::string>{"d=4"}));
  EXPECT_EQ(h.memoryBytes(), bytes);  // no new memory for a header that fits an old slot
}

TEST(HeaderMapTest, CopyAndMoveCarryOnlyLiveEntries) {
  HeaderMap h;
  h.add("a", "1");
  h.add("b", "2");
  h.remove("a");
  HeaderMap copy = h;
  EXPECT_EQ(names(copy), (std::vector<std::string>{"b=2"}));
  HeaderMap moved = std::move(h);
  EXPECT_EQ(names(moved), (std::vector<std::string>{"b=2"}));
  EXPECT_TRUE(h.empty());  // NOLINT(bugprone-use-after-move): a moved-from map is empty
  h.add("z", "9");
  EXPECT_EQ(names(h), (std::vector<std::string>{"z=9"}));
  copy = moved;
  EXPECT_EQ(names(copy), (std::vector<std::string>{"b=2"}));
}

TEST(HeaderMapTest, ClearKeepingUpToFreesWhatAnOutlierLeft) {
  HeaderMap h;
  h.add("cookie", std::string(50000, 'c'));
  h.clearKeepingUpTo(16 * 1024);
  EXPECT_TRUE(h.empty());
  EXPECT_LT(h.memoryBytes(), 16u * 1024);
  h.add("a", "1");
  const size_t small = h.memoryBytes();
  h.clearKeepingUpTo(16 * 1024);
  EXPECT_EQ(h.memoryBytes(), small);  // a typical map keeps its memory

  // A map that grew and was then moved (a recycled request head) is still measured and freed.
  h.add("cookie", std::string(50000, 'c'));
  HeaderMap moved(std::move(h));
  moved.clearKeepingUpTo(16 * 1024);
  EXPECT_LT(moved.memoryBytes(), 16u * 1024);
  moved.add("cookie", std::string(50000, 'c'));
  HeaderMap assigned;
  assigned = std::move(moved);
  assigned.clearKeepingUpTo(16 * 1024);
  EXPECT_LT(assigned.memoryBytes(), 16u * 1024);

  std::string s(50000, 'x');
  clearKeepingUpTo(s, 4096);
  EXPECT_TRUE(s.empty());
  EXPECT_LE(s.capacity(), 4096u);
}

TEST(HeaderMapTest, ClearKeepingUpToFreesAnOutlierWrittenIntoAReusedSlot) {
  HeaderMap h;
  h.add("a", "1");
  h.add("b", "2");
  h.clearKeepingUpTo(16 * 1024);  // measured once: small, kept
  const size_t small = h.memoryBytes();
  for (int i = 0; i < 3; ++i) {  // typical messages in the same slots: nothing grows
    h.add("a", "1");
    h.clearKeepingUpTo(16 * 1024);
    EXPECT_EQ(h.memoryBytes(), small);
  }
  h.add("a", "1");
  h.add("b", std::string(50000, 'v'));  // the second slot's string grows in place
  h.clearKeepingUpTo(16 * 1024);
  EXPECT_LT(h.memoryBytes(), 16u * 1024);
}

TEST(HeaderMapTest, ToLowerInPlaceChangesOnlyAsciiUpperCaseAtAnyLengthAndOffset) {
  // Every byte value, at every offset within the 8-byte blocks and in the scalar tail.
  for (size_t offset = 0; offset < 9; ++offset) {
    std::string s(offset, 'Q');
    for (int c = 0; c < 256; ++c) s.push_back(static_cast<char>(c));
    std::string expected = s;
    for (char& c : expected) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    }
    toLowerInPlace(s);
    EXPECT_EQ(s, expected) << "offset " << offset;
  }
  std::string empty;
  toLowerInPlace(empty);
  EXPECT_TRUE(empty.empty());
}

TEST(HopByHopTest, ExactlyTheListedNames) {
  for (std::string_view n : {"te", "trailer", "upgrade", "connection", "keep-alive",
                             "content-length", "proxy-connection", "transfer-encoding",
                             "proxy-authenticate", "proxy-authorization"}) {
    EXPECT_TRUE(isHopByHopHeader(n)) << n;
  }
  for (std::string_view n : {"", "t", "tf", "trailers", "upgrades", "connectio", "keep_alive",
                             "content-type", "host", "x-request-id", "proxy-authorizatio",
                             "transfer-encodings"}) {
    EXPECT_FALSE(isHopByHopHeader(n)) << n;
  }
}

TEST(HeaderMapTest, CaseHelpers) {
  std::string s = "X-Request-ID";
  toLowerInPlace(s);
  EXPECT_EQ(s, "x-request-id");
  EXPECT_TRUE(equalsIgnoreCase("Chunked", "chunked"));
  EXPECT_FALSE(equalsIgnoreCase("chunked ", "chunked"));
}

// What appendForwarded() writes for `h`, dropping nothing more.
std::string forwarded(const HeaderMap& h) {
  std::string out;
  appendForwarded(h, out, [](std::string_view, const std::string&) { return false; });
  return out;
}

TEST(HopByHopTest, RemovesRfc9110HeadersAndFraming) {
  HeaderMap h;
  for (const char* name : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                           "upgrade", "proxy-authorization", "proxy-authenticate",
                           "transfer-encoding", "content-length"}) {
    h.add(name, "x");
  }
  h.add("x-keep", "yes");
  EXPECT_EQ(forwarded(h), "x-keep: yes\r\n");
  EXPECT_EQ(h.size(), 11u);  // the map is left as it is
}

TEST(HopByHopTest, RemovesHeadersNamedInConnection) {
  HeaderMap h;
  h.add("connection", "close, X-Secret ,  x-other");
  h.add("x-secret", "1");
  h.add("x-other", "2");
  h.add("x-public", "3");
  EXPECT_EQ(forwarded(h), "x-public: 3\r\n");
}

TEST(HopByHopTest, TokensOfEveryConnectionHeaderAndOrderOfTheRest) {
  HeaderMap h;
  h.add("a", "1");
  h.add("connection", "x-one");
  h.add("x-one", "gone");
  h.add("b", "2");
  h.add("Connection-Like", "kept");  // not the Connection header (names are lower-case here)
  h.add("connection", "X-Two");
  h.add("x-two", "gone");
  h.add("c", "3");
  EXPECT_EQ(forwarded(h), "a: 1\r\nb: 2\r\nConnection-Like: kept\r\nc: 3\r\n");
}

TEST(HopByHopTest, DropsWhatTheCallerDropsAndSeesEveryOtherHeader) {
  HeaderMap h;
  h.add("host", "svc");
  h.add("x-secret", "1");
  h.add("te", "trailers");
  h.add("x-public", "2");
  std::vector<std::string> seen;
  std::string out = "GET / HTTP/1.1\r\n";
  appendForwarded(h, out, [&](std::string_view name, const std::string& value) {
    seen.push_back(std::string(name) + "=" + value);
    return name == "x-secret";
  });
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nhost: svc\r\nx-public: 2\r\n");
  EXPECT_EQ(seen, (std::vector<std::string>{"host=svc", "x-secret=1", "x-public=2"}));
}

// Feeds `lines` ({name pieces..., value pieces...} split at '|') as a parser would.
HeaderBlock blockOf(std::initializer_list<std::pair<std::string, std::string>> lines) {
  HeaderBlock b;
  auto pieces = [](const std::string& s) {
    std::vector<std::string> out;
    size_t from = 0;
    for (size_t bar; (bar = s.find('|', from)) != std::string::npos; from = bar + 1) {
      out.push_back(s.substr(from, bar - from));
    }
    out.push_back(s.substr(from));
    return out;
  };
  for (const auto& [name, value] : lines) {
    for (const auto& p : pieces(name)) b.appendName(p.data(), p.size());
    EXPECT_TRUE(b.nameComplete());
    if (!value.empty()) {
      for (const auto& p : pieces(value)) b.appendValue(p.data(), p.size());
    }
    b.valueComplete();
  }
  return b;
}

TEST(HeaderBlockTest, PiecesMakeLowerCaseNamesAndValuesAsSent) {
  HeaderBlock b = blockOf({{"Con|tent-Type", "text/|plain"}, {"X-EMPTY", ""}, {"ETag", "\"A-1\""}});
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b.name(0), "content-type");
  EXPECT_EQ(b.value(0), "text/plain");
  EXPECT_EQ(b.name(1), "x-empty");
  EXPECT_EQ(b.value(1), "");
  EXPECT_EQ(b.name(2), "etag");
  EXPECT_EQ(b.value(2), "\"A-1\"");  // values keep their case
  std::string out;
  b.appendForwarded(out, "x-none");
  EXPECT_EQ(out, "content-type: text/plain\r\nx-empty: \r\netag: \"A-1\"\r\n");
}

TEST(HeaderBlockTest, ForwardsAllButHopByHopConnectionListedAndDropped) {
  HeaderBlock b = blockOf({{"Server", "nginx"},
                           {"X-Early", "named by a later Connection line"},
                           {"Connection", "keep-alive, X-Secret, x-early"},
                           {"Content-Length", "6"},
                           {"X-Secret", "1"},
                           {"Keep-Alive", "timeout=5"},
                           {"X-Remora-Attempts", "2"},
                           {"Date", "today"},
                           {"Transfer-Encoding", "chunked"},
                           {"Connection", "close,x-other"},
                           {"X-Other", "2"},
                           {"X-Public", "3"}});
  std::string out = "HTTP/1.1 200 OK\r\n";
  b.appendForwarded(out, "x-remora-attempts");
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nserver: nginx\r\ndate: today\r\nx-public: 3\r\n");
}

TEST(HeaderBlockTest, SpaceBeforeTheColonIsDroppedASpaceInsideRefused) {
  // What llhttp hands over for "X-A : 1" (the name piece keeps the space) and "X A: 1".
  HeaderBlock b = blockOf({{"X-A |  ", "1"}, {"X-B", "2"}});
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b.name(0), "x-a");
  EXPECT_EQ(b.value(0), "1");
  std::string out;
  b.appendForwarded(out, "x-none");
  EXPECT_EQ(out, "x-a: 1\r\nx-b: 2\r\n");

  HeaderBlock bad;
  bad.appendName("X A", 3);
  EXPECT_FALSE(bad.nameComplete());
  HeaderBlock blank;
  blank.appendName(" ", 1);
  EXPECT_FALSE(blank.nameComplete());
  HeaderBlock empty;  // ": v", which llhttp takes as a header line with no name
  EXPECT_FALSE(empty.nameComplete());
  HeaderBlock second = blockOf({{"a", "1"}});
  EXPECT_FALSE(second.nameComplete());  // the same after a complete line
}

TEST(HeaderBlockTest, ClearKeepsTypicalMemoryAndFreesAnOutlier) {
  HeaderBlock b = blockOf({{"a", "1"}});
  b.clearKeepingUpTo(16 * 1024);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.bytes(), 0u);
  std::string big(50000, 'v');
  b.appendName("x-big", 5);
  ASSERT_TRUE(b.nameComplete());
  b.appendValue(big.data(), big.size());
  b.valueComplete();
  EXPECT_GT(b.bytes(), 50000u);
  b.clearKeepingUpTo(16 * 1024);
  EXPECT_EQ(b.bytes(), 0u);
  // The next message starts clean, at offset 0.
  b.appendName("B", 1);
  ASSERT_TRUE(b.nameComplete());
  b.appendValue("2", 1);
  b.valueComplete();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b.name(0), "b");
  EXPECT_EQ(b.value(0), "2");
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

// What absoluteFormToOriginForm makes of a target: the new target and Host lines, or the error.
struct OriginForm {
  std::string error;
  std::string target;
  std::vector<std::string> hosts;
};
OriginForm toOrigin(std::string_view method, std::string target,
                    std::initializer_list<std::pair<const char*, const char*>> headers) {
  HeaderMap h;
  for (const auto& [n, v] : headers) h.add(n, v);
  OriginForm out;
  out.error = std::string(absoluteFormToOriginForm(method, target, h));
  out.target = target;
  for (const auto& [n, v] : h) {
    if (n == "host") out.hosts.push_back(v);
  }
  return out;
}

TEST(AbsoluteFormTest, BecomesOriginFormWithTheUrisAuthorityAsHost) {
  OriginForm r = toOrigin("GET", "http://orders.internal:8080/a/b?c=d", {{"host", "elsewhere"}});
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.target, "/a/b?c=d");
  EXPECT_EQ(r.hosts, std::vector<std::string>{"orders.internal:8080"});

  r = toOrigin("GET", "HTTP://Orders", {});  // the scheme is case-insensitive; no Host needed
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.target, "/");
  EXPECT_EQ(r.hosts, std::vector<std::string>{"Orders"});

  r = toOrigin("GET", "http://orders?q", {{"host", "orders"}});  // empty path before a query
  EXPECT_EQ(r.target, "/?q");
  r = toOrigin("OPTIONS", "http://orders", {});  // RFC 9112 3.2.4
  EXPECT_EQ(r.target, "*");
  r = toOrigin("OPTIONS", "http://orders/", {});
  EXPECT_EQ(r.target, "/");
  r = toOrigin("GET", "http://[::1]:80/x", {});
  EXPECT_EQ(r.hosts, std::vector<std::string>{"[::1]:80"});
}

TEST(AbsoluteFormTest, LeavesOtherFormsForRequestHeadErrorToJudge) {
  for (const char* target : {"/a", "*", "orders:80", "x/y", "://a/b", "1http://a/"}) {
    SCOPED_TRACE(target);
    OriginForm r = toOrigin("GET", target, {{"host", "h"}});
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.target, target);
    EXPECT_EQ(r.hosts, std::vector<std::string>{"h"});
  }
}

TEST(AbsoluteFormTest, RefusesWhatCannotBeForwardedSafely) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"https://a/x", "scheme other than http://"},
      {"ftp://a/x", "scheme other than http://"},
      {"http:///x", "without a host"},
      {"http://?x", "without a host"},
      {"http://user:pw@a/x", "userinfo"},
      {"http://a\\b/x", "invalid host"},
      {"http://a%20b\"c/x", "invalid host"},
  };
  for (const auto& [target, why] : cases) {
    SCOPED_TRACE(target);
    OriginForm r = toOrigin("GET", target, {});
    EXPECT_NE(r.error.find(why), std::string::npos) << r.error;
  }
  // Two Host lines stay an error even though both would be replaced.
  OriginForm r = toOrigin("GET", "http://a/x", {{"host", "b"}, {"host", "c"}});
  EXPECT_EQ(r.error, "more than one host header");
}

TEST(AuthorityTest, HostPortIpLiteralsAndNothingElse) {
  for (const char* ok : {"", "a", "orders.svc.cluster.local:8080", "127.0.0.1", "[::1]:9901",
                         "xn--bcher-kva.example", "a%2Db", "a_b~c!$&'()*+,;="}) {
    EXPECT_TRUE(isValidAuthority(ok)) << ok;
  }
  for (const char* bad : {"a b", "a/b", "a?b", "a#b", "u@a", "a\tb", "a\\b", "a\"b", "a<b",
                          "caf\xc3\xa9"}) {
    EXPECT_FALSE(isValidAuthority(bad)) << bad;
  }
}

TEST(RelayableUpgradeTest, NamedProtocolsButNotH2c) {
  auto relayable = [](std::initializer_list<std::string_view> upgrade_lines) {
    HeaderMap h;
    h.add("connection", "upgrade");
    for (std::string_view v : upgrade_lines) h.add("upgrade", v);
    return isRelayableUpgrade(h);
  };
  EXPECT_TRUE(relayable({"websocket"}));
  EXPECT_TRUE(relayable({"WebSocket"}));
  EXPECT_TRUE(relayable({"foo/2, bar"}));
  EXPECT_FALSE(relayable({}));           // no Upgrade line
  EXPECT_FALSE(relayable({""}));         // names nothing
  EXPECT_FALSE(relayable({" , "}));
  EXPECT_FALSE(relayable({"h2c"}));
  EXPECT_FALSE(relayable({"H2C"}));
  EXPECT_FALSE(relayable({"websocket, h2c"}));
  EXPECT_FALSE(relayable({"websocket", "h2c/1"}));  // on a second line too
  EXPECT_TRUE(relayable({"h2cx"}));                 // another protocol
}

TEST(RelayableUpgradeTest, OffersOnlyWhatARouteAllows) {
  const std::vector<std::string> websocket{"websocket"};
  auto offers = [&](std::string_view upgrade) {
    HeaderMap h;
    h.add("upgrade", upgrade);
    return upgradeOffersOnly(h, websocket);
  };
  EXPECT_TRUE(offers("websocket"));
  EXPECT_TRUE(offers("WebSocket/13"));
  EXPECT_TRUE(offers(" websocket , "));
  EXPECT_FALSE(offers("foo"));
  EXPECT_FALSE(offers("websocket, foo"));
  EXPECT_TRUE(upgradeOffersOnly(HeaderMap{}, websocket));  // offers nothing: nothing refused
}

TEST(RequestHeadErrorTest, HostMustBeOneValidAuthority) {
  HeaderMap h;
  h.add("host", "orders:80");
  EXPECT_EQ(requestHeadError("GET", "/", 1, h), "");
  h.add("host", "orders:80");
  EXPECT_EQ(requestHeadError("GET", "/", 1, h), "more than one host header");
  HeaderMap bad;
  bad.add("host", "evil.example/path");
  EXPECT_EQ(requestHeadError("GET", "/", 1, bad), "invalid host header value");
  HeaderMap empty;  // an empty Host is allowed (RFC 9110 7.2)
  empty.add("host", "");
  EXPECT_EQ(requestHeadError("GET", "/", 1, empty), "");
}

TEST(UnknownMethodTest, AWellFormedMethodLlhttpDoesNotKnowIsNotMalformed) {
  // llhttp stops at the first byte its method table has no branch for.
  EXPECT_TRUE(isUnknownMethod("FOO / HTTP/1.1\r\n", 1));
  EXPECT_TRUE(isUnknownMethod("get / HTTP/1.1\r\n", 0));  // methods are case-sensitive
  EXPECT_TRUE(isUnknownMethod("BREW-COFFEE /pot HTTP/1.1\r\n", 2));
  // Behind a pipelined request in the same buffer.
  const std::string_view pipelined = "GET / HTTP/1.1\r\nhost: x\r\n\r\nFOO / HTTP/1.1\r\n";
  EXPECT_TRUE(isUnknownMethod(pipelined, pipelined.find("FOO") + 1));
}

TEST(UnknownMethodTest, BytesThatAreNoRequestLineStayMalformed) {
  EXPECT_FALSE(isUnknownMethod(std::string_view("\x16\x03\x01\x02", 4), 0));  // TLS hello
  EXPECT_FALSE(isUnknownMethod("G\x01T / HTTP/1.1\r\n", 1));   // a control byte
  EXPECT_FALSE(isUnknownMethod("GE(T / HTTP/1.1\r\n", 2));      // not a token character
  EXPECT_FALSE(isUnknownMethod("FOO\t/ HTTP/1.1\r\n", 1));      // not followed by a space
  EXPECT_FALSE(isUnknownMethod("FOOBAR", 1));                     // cut off: not seen whole
  EXPECT_FALSE(isUnknownMethod("FOO / HTT", 1));                  // cut off before the version
  EXPECT_FALSE(isUnknownMethod("this is not http\r\n", 1));       // no request line
  EXPECT_FALSE(isUnknownMethod("FOO  HTTP/1.1\r\n", 1));          // no target
  EXPECT_FALSE(isUnknownMethod("x FOO / HTTP/1.1", 3));            // not at a line's start
  EXPECT_FALSE(isUnknownMethod("FOO / HTTP/1.1", 42));             // past the input
}

}  // namespace
}  // namespace remora::http
