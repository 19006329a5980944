#pragma once

// HTTP/1.1 header storage and the header rules of RFC 9110 a proxy must apply.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace remora::http {

// Ordered header list. Names are stored lower-case (HTTP/1 names are case-insensitive, and
// lower-casing once at parse time makes every later lookup a plain compare, as Envoy does).
//
// clear() and remove() keep the memory of the entries they drop: the next add() reuses a dropped
// entry's strings, so a map that lives across requests (a keep-alive connection's parser state, a
// recycled request head) stops allocating once it has seen a typical message.
class HeaderMap {
 public:
  using Entry = std::pair<std::string, std::string>;
  using const_iterator = std::vector<Entry>::const_iterator;

  HeaderMap() = default;
  HeaderMap(const HeaderMap& other)
      : entries_(other.begin(), other.end()), size_(other.size_), grew_(true) {}
  HeaderMap& operator=(const HeaderMap& other) {
    if (this != &other) {
      clear();
      for (const auto& [name, value] : other) add(name, value);
    }
    return *this;
  }
  // A move hands over the memory as it is, measured or not: a recycled request head moves twice
  // per request, and must not make clearKeepingUpTo() measure every entry again each time.
  HeaderMap(HeaderMap&& other) noexcept
      : entries_(std::move(other.entries_)), size_(other.size_), grew_(other.grew_) {
    other.entries_.clear();
    other.size_ = 0;
    other.grew_ = false;
  }
  HeaderMap& operator=(HeaderMap&& other) noexcept {
    if (this != &other) {
      entries_ = std::move(other.entries_);
      size_ = other.size_;
      grew_ = other.grew_;
      other.entries_.clear();
      other.size_ = 0;
      other.grew_ = false;
    }
    return *this;
  }

  // `name` must already be lower-case.
  const std::string* get(std::string_view name) const;
  size_t count(std::string_view name) const;
  void add(std::string_view name, std::string_view value);
  void remove(std::string_view name);
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  // Drops every entry; their memory stays for the next message.
  void clear() { size_ = 0; }
  // clear(), and frees the memory too when it is more than `keep_bytes` (what an outlier left).
  void clearKeepingUpTo(size_t keep_bytes);
  const_iterator begin() const { return entries_.begin(); }
  const_iterator end() const { return entries_.begin() + static_cast<std::ptrdiff_t>(size_); }
  // Bytes of heap this map holds, dropped entries included (strings' capacity, the vector).
  size_t memoryBytes() const;

  // Drops the entries `pred(entry)` is true for, keeping the order of the others.
  template <class Pred>
  void removeIf(Pred pred) {
    size_t out = 0;
    for (size_t i = 0; i < size_; ++i) {
      if (pred(entries_[i])) continue;
      if (out != i) std::swap(entries_[out], entries_[i]);  // the dropped entry keeps its memory
      ++out;
    }
    size_ = out;
  }

 private:
  std::vector<Entry> entries_;  // [0, size_) live, then dropped entries kept for their memory
  size_t size_ = 0;
  bool grew_ = false;  // add() may have allocated since clearKeepingUpTo() last measured
};

// The header names one message's Connection headers list (RFC 9110 7.6.1) beyond those
// isHopByHopHeader() drops anyway. The usual values ("keep-alive", "close") list nothing, so the
// usual message pays nothing per header for them.
class ConnectionListed {
 public:
  void addValue(std::string_view connection_value);
  // `lower_name` is listed.
  bool contains(std::string_view lower_name) const;
  bool empty() const { return listed_.empty(); }
  void clear() { listed_.clear(); }

 private:
  std::string listed_;  // lower-case tokens, each followed by ','; short: no allocation
};

// A message's header lines stored the way they are written, "name: value\r\n" one after the other
// in one buffer, names lower-cased, with an index of where each line starts. It is for headers a
// proxy only forwards (a response's): parsing appends each byte once, and forwarding copies runs of
// kept lines, with no per-header strings to fill, reorder and clear (HAProxy's HTX and h2o keep
// headers flat the same way).
//
// Fed by a parser in order: for each header, the name in one or more pieces, nameComplete(), the
// value in one or more pieces (none for an empty value), valueComplete().
class HeaderBlock {
 public:
  void appendName(const char* at, size_t len);  // lower-cased as it is stored
  // False when the name is not a token (RFC 9110 5.6.2) once the whitespace before the colon is
  // dropped, as a proxy must (RFC 9112 5.1): the message is then not forwardable.
  [[nodiscard]] bool nameComplete();
  void appendValue(const char* at, size_t len) { buf_.append(at, len); }
  void valueComplete();

  size_t size() const { return lines_.size(); }
  std::string_view name(size_t i) const {
    return std::string_view(buf_).substr(lines_[i].start, lines_[i].name_end - lines_[i].start);
  }
  std::string_view value(size_t i) const {
    return std::string_view(buf_).substr(lines_[i].name_end + 2,
                                          lines_[i].end - lines_[i].name_end - 4);
  }
  // Bytes held, the line being parsed included: what a header size limit is checked against.
  size_t bytes() const { return buf_.size(); }
  // Drops every line; the memory stays for the next message unless it is more than `keep_bytes`.
  void clearKeepingUpTo(size_t keep_bytes);

  // Appends the lines a proxy forwards: all but the hop-by-hop ones (isHopByHopHeader, the
  // framing headers included, and those named in Connection) and those named `drop`.
  void appendForwarded(std::string& out, std::string_view drop) const;

 private:
  struct Line {
    uint32_t start;     // the name
    uint32_t name_end;  // ": " follows
    uint32_t end;       // past the "\r\n"
    bool hop_by_hop;    // isHopByHopHeader(name), found once as the line completes
  };
  std::string buf_;
  std::vector<Line> lines_;
  uint32_t name_end_ = 0;    // of the line being parsed (its start is the last line's end)
  ConnectionListed listed_;  // what the message's Connection lines named
};

// s.clear(), freeing the memory when its capacity is more than `keep_bytes`.
inline void clearKeepingUpTo(std::string& s, size_t keep_bytes) {
  s.clear();
  if (s.capacity() > keep_bytes) std::string().swap(s);
}

void toLowerInPlace(char* p, size_t n);
inline void toLowerInPlace(std::string& s) { toLowerInPlace(s.data(), s.size()); }
bool equalsIgnoreCase(std::string_view a, std::string_view b);

// True for the hop-by-hop headers of RFC 9110 section 7.6.1 (plus the legacy ones proxies strip).
bool isHopByHopHeader(std::string_view lower_name);

// Appends "name: value\r\n" for every header a proxy forwards, in order: all but the hop-by-hop
// ones, those named in Connection, the message framing headers (content-length,
// transfer-encoding: the proxy re-frames each hop itself) and those `drop(name, value)` is true
// for. One pass over the map, which is left as it is.
template <class Drop>
void appendForwarded(const HeaderMap& headers, std::string& out, Drop&& drop) {
  ConnectionListed listed;
  size_t total = out.size();
  for (const auto& [name, value] : headers) {
    if (name == "connection") listed.addValue(value);
    total += name.size() + value.size() + 4;
  }
  out.reserve(total);
  for (const auto& [name, value] : headers) {
    if (isHopByHopHeader(name) || (!listed.empty() && listed.contains(name)) ||
        drop(std::string_view(name), value)) {
      continue;
    }
    out.append(name).append(": ", 2).append(value).append("\r\n", 2);
  }
}

// RFC 9112 3.2.2: a request target in absolute-form ("GET http://orders:8080/a?b HTTP/1.1", what
// clients send to a proxy they are configured to use, e.g. through HTTP_PROXY) becomes the
// origin-form every upstream understands: `target` is set to the path and query ("/" when the
// path is empty; "*" for an OPTIONS without path or query, 3.2.4) and every Host line is replaced
// by one holding the URI's authority, the proxy ignoring the Host received, as the RFC requires.
// Only the "http" scheme is taken (case-insensitive); the authority must be a valid, non-empty
// host[:port] without userinfo. More than one Host line stays an error (requestHeadError).
// Returns "" when `target` was rewritten or is not in absolute-form (it is then left as it is, for
// requestHeadError to judge), otherwise the reason for a 400.
std::string_view absoluteFormToOriginForm(std::string_view method, std::string& target,
                                          HeaderMap& headers);

// True when a request's Upgrade lines (RFC 9110 7.8) name at least one protocol and none is h2c:
// HTTP/2 over cleartext is HTTP to the hop it is sent to, which speaks HTTP/1.1 upstream, so
// that upgrade is not relayed (Envoy drops it too). WebSocket and any other protocol are.
bool isRelayableUpgrade(const HeaderMap& headers);
// True when every protocol the Upgrade lines offer (its name, before any "/version") is in
// `allowed` (lower-case names): a route's `upgrades` list.
bool upgradeOffersOnly(const HeaderMap& headers, const std::vector<std::string>& allowed);

// True when `authority` is a syntactically valid uri-host [":" port] (RFC 9110 7.2, RFC 3986
// 3.2.2): unreserved, sub-delims, pct-encoded, ':' and the brackets of an IP literal; no
// whitespace, '@' (userinfo), '/', '?', '#' or control bytes. Empty is valid (a Host may be empty).
bool isValidAuthority(std::string_view authority);

// Checks a parsed request head against the rules of RFC 9110/9112 that llhttp leaves to the
// application and whose violation makes a request mean different things to different servers
// (request smuggling): the target must be origin-form ("/path?query", or "*" for OPTIONS) without
// a fragment, header names must be tokens (no whitespace before the colon), values must not hold
// CR, LF or NUL (what obs-fold line folding leaves behind), at most one Host and a valid one
// (isValidAuthority), and no Transfer-Encoding in HTTP/1.0. Returns "" when the head may be
// forwarded, otherwise the reason for a 400.
std::string_view requestHeadError(std::string_view method, std::string_view target,
                                  int http_minor, const HeaderMap& headers);

// For llhttp's HPE_INVALID_METHOD at `error_offset` of `input`: true when the bytes there are a
// well-formed method llhttp does not know (a token at the start of a line, then a target and
// " HTTP/": "FOO / HTTP/1.1", "get / HTTP/1.1"), which RFC 9110 9.1 answers with 501; false for
// bytes that are not a request line (a TLS handshake on a plain port, "this is not http", a line
// cut off by the end of `input`), which stay a 400.
bool isUnknownMethod(std::string_view input, size_t error_offset);

// Reason phrase for a status code ("Unknown" for codes without one).
std::string_view reasonPhrase(int status);

// Appends "name: value\r\n" for every entry.
void serializeHeaders(const HeaderMap& headers, std::string& out);

}  // namespace remora::http
