#include "http/headers.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

namespace remora::http {

namespace {

char lowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

const std::string* HeaderMap::get(std::string_view name) const {
  for (size_t i = 0; i < size_; ++i) {
    if (entries_[i].first == name) return &entries_[i].second;
  }
  return nullptr;
}

size_t HeaderMap::count(std::string_view name) const {
  return static_cast<size_t>(
      std::count_if(begin(), end(), [&](const Entry& e) { return e.first == name; }));
}

void HeaderMap::add(std::string_view name, std::string_view value) {
  if (size_ < entries_.size()) {
    Entry& e = entries_[size_];
    if (name.size() > e.first.capacity() || value.size() > e.second.capacity()) grew_ = true;
    e.first.assign(name);
    e.second.assign(value);
  } else {
    // A typical request or response has fewer than 16 header lines: one allocation for them.
    if (entries_.capacity() == 0) entries_.reserve(16);
    entries_.emplace_back(std::string(name), std::string(value));
    grew_ = true;
  }
  ++size_;
}

void HeaderMap::clearKeepingUpTo(size_t keep_bytes) {
  clear();
  // Memory only grows in add(): when nothing grew since the last check, which found at most
  // `keep_bytes`, there is nothing to measure (this runs once per message).
  if (!grew_) return;
  grew_ = false;
  if (memoryBytes() > keep_bytes) *this = HeaderMap();
}

size_t HeaderMap::memoryBytes() const {
  size_t bytes = entries_.capacity() * sizeof(Entry);
  for (const Entry& e : entries_) bytes += e.first.capacity() + e.second.capacity();
  return bytes;
}

void HeaderMap::remove(std::string_view name) {
  removeIf([&](const Entry& e) { return e.first == name; });
}

void toLowerInPlace(char* p, size_t n) {
  // Eight bytes at a time: 0x20 is or-ed into exactly the bytes in 'A'..'Z' (bytes >= 0x80 are
  // left alone), the classic SWAR range test. Header names are short; this runs for every one.
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t x;
    std::memcpy(&x, p, 8);
    const uint64_t heptets = x & 0x7f7f7f7f7f7f7f7fULL;
    const uint64_t above_z = heptets + 0x2525252525252525ULL;  // bit 7 set where > 'Z'
    const uint64_t from_a = heptets + 0x3f3f3f3f3f3f3f3fULL;   // bit 7 set where >= 'A'
    const uint64_t upper = ~x & (from_a & ~above_z) & 0x8080808080808080ULL;
    x |= upper >> 2;
    std::memcpy(p, &x, 8);
  }
  for (; n > 0; ++p, --n) *p = lowerAscii(*p);
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lowerAscii(a[i]) != lowerAscii(b[i])) return false;
  }
  return true;
}

bool isHopByHopHeader(std::string_view n) {
  // By length first: most names of a message are of none of these lengths and cost one compare.
  switch (n.size()) {
    case 2: return n == "te";
    case 7: return n == "trailer" || n == "upgrade";
    case 10: return n == "connection" || n == "keep-alive";
    case 14: return n == "content-length";
    case 16: return n == "proxy-connection";
    case 17: return n == "transfer-encoding";
    case 18: return n == "proxy-authenticate";
    case 19: return n == "proxy-authorization";
    default: return false;
  }
}

void ConnectionListed::addValue(std::string_view connection_value) {
  std::string_view v = connection_value;
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view token = trim(v.substr(0, comma));
    if (!token.empty() && !equalsIgnoreCase(token, "close")) {
      size_t at = listed_.size();
      listed_.append(token);
      toLowerInPlace(listed_.data() + at, token.size());
      if (isHopByHopHeader(std::string_view(listed_).substr(at))) {
        listed_.resize(at);
      } else {
        listed_.push_back(',');
      }
    }
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

bool ConnectionListed::contains(std::string_view name) const {
  std::string_view listed = listed_;
  while (!listed.empty()) {
    size_t comma = listed.find(',');
    if (listed.substr(0, comma) == name) return true;
    listed.remove_prefix(comma + 1);
  }
  return false;
}

void HeaderBlock::appendName(const char* at, size_t len) {
  size_t from = buf_.size();
  buf_.append(at, len);
  toLowerInPlace(buf_.data() + from, len);
}

bool HeaderBlock::nameComplete() {
  // llhttp lets a space through in a response's header names (it refuses every other byte that
  // is not a token character, tabs included): at the end ("Name : v") it is dropped, anywhere
  // else ("Na me: v") the name is not a token.
  const size_t start = lines_.empty() ? 0 : lines_.back().end;
  // Empty: llhttp takes ": v" as a header line (after a status line ended by a bare CR, too).
  if (buf_.size() == start) return false;
  if (std::memchr(buf_.data() + start, ' ', buf_.size() - start) != nullptr) {
    size_t end = buf_.size();
    while (end > start && buf_[end - 1] == ' ') --end;
    buf_.resize(end);
    if (end == start || buf_.find(' ', start) != std::string::npos) return false;
  }
  name_end_ = static_cast<uint32_t>(buf_.size());
  buf_.append(": ", 2);
  return true;
}

void HeaderBlock::valueComplete() {
  const uint32_t start = lines_.empty() ? 0 : lines_.back().end;
  const std::string_view name(buf_.data() + start, name_end_ - start);
  const bool hop_by_hop = isHopByHopHeader(name);
  if (hop_by_hop && name == "connection") {
    listed_.addValue(std::string_view(buf_).substr(name_end_ + 2));
  }
  buf_.append("\r\n", 2);
  lines_.push_back(Line{start, name_end_, static_cast<uint32_t>(buf_.size()), hop_by_hop});
}

void HeaderBlock::clearKeepingUpTo(size_t keep_bytes) {
  buf_.clear();
  lines_.clear();
  name_end_ = 0;
  listed_.clear();
  if (buf_.capacity() + lines_.capacity() * sizeof(Line) > keep_bytes) {
    // A Connection value's tokens are no longer than the line that held them.
    std::string().swap(buf_);
    std::vector<Line>().swap(lines_);
    listed_ = ConnectionListed();
  }
}

void HeaderBlock::appendForwarded(std::string& out, std::string_view drop) const {
  out.reserve(out.size() + buf_.size());
  // Runs of kept lines are contiguous in buf_: one append per run.
  size_t run_start = 0;
  size_t run_end = 0;
  for (size_t i = 0; i < lines_.size(); ++i) {
    std::string_view n = name(i);
    if (lines_[i].hop_by_hop || n == drop || (!listed_.empty() && listed_.contains(n))) {
      if (run_end > run_start) out.append(buf_, run_start, run_end - run_start);
      run_start = run_end = lines_[i].end;
    } else {
      if (run_end == run_start) run_start = lines_[i].start;
      run_end = lines_[i].end;
    }
  }
  if (run_end > run_start) out.append(buf_, run_start, run_end - run_start);
}

namespace {

// A byte table: letters, digits and the bytes of `others`.
constexpr std::array<bool, 256> alnumAnd(std::string_view others) {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : others) t[static_cast<unsigned char>(c)] = true;
  return t;
}

// tchar of RFC 9110 section 5.6.2, as a table: checked for every byte of every header name.
constexpr std::array<bool, 256> kTokenChars = alnumAnd("!#$%&'*+-.^_`|~");

bool isTokenChar(char c) { return kTokenChars[static_cast<unsigned char>(c)]; }

// The bytes of an authority (RFC 3986 3.2.2 host and 3.2.3 port) without userinfo: unreserved,
// sub-delims, '%' of pct-encoded, ':' and the brackets of an IP literal.
constexpr std::array<bool, 256> kAuthorityChars = alnumAnd("-._~!$&'()*+,;=%:[]");

}  // namespace

namespace {

// Calls `f(name)` for each protocol the Upgrade lines offer ("name[/version]", comma-separated,
// over any number of lines), with the name only, until `f` returns false. False if it did.
template <class F>
bool forEachUpgradeProtocol(const HeaderMap& headers, F&& f) {
  for (const auto& [name, value] : headers) {
    if (name != "upgrade") continue;
    std::string_view v = value;
    while (!v.empty()) {
      size_t comma = v.find(',');
      std::string_view protocol = trim(v.substr(0, comma));
      if (!protocol.empty() && !f(protocol.substr(0, protocol.find('/')))) return false;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return true;
}

}  // namespace

bool isRelayableUpgrade(const HeaderMap& headers) {
  bool named = false;
  const bool no_h2c = forEachUpgradeProtocol(headers, [&](std::string_view protocol) {
    named = true;
    return !equalsIgnoreCase(protocol, "h2c");
  });
  return named && no_h2c;
}

bool upgradeOffersOnly(const HeaderMap& headers, const std::vector<std::string>& allowed) {
  return forEachUpgradeProtocol(headers, [&](std::string_view protocol) {
    return std::any_of(allowed.begin(), allowed.end(),
                       [&](const std::string& a) { return equalsIgnoreCase(a, protocol); });
  });
}

bool isValidAuthority(std::string_view authority) {
  return std::all_of(authority.begin(), authority.end(),
                     [](char c) { return kAuthorityChars[static_cast<unsigned char>(c)]; });
}

std::string_view absoluteFormToOriginForm(std::string_view method, std::string& target,
                                          HeaderMap& headers) {
  if (target.empty() || target.front() == '/' || target == "*") return {};
  // A scheme is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) followed by "://" here; anything
  // else (authority-form "host:port", a bare word) is not absolute-form: requestHeadError says no.
  const size_t colon = target.find("://");
  if (colon == std::string::npos || colon == 0) return {};
  const std::string_view scheme = std::string_view(target).substr(0, colon);
  const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!alpha(scheme.front()) || !std::all_of(scheme.begin(), scheme.end(), [&](char c) {
        return alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
      })) {
    return {};
  }
  if (!equalsIgnoreCase(scheme, "http")) {
    return "absolute-form request target with a scheme other than http:// (https goes through "
           "CONNECT, which is not supported)";
  }
  const size_t authority_start = colon + 3;
  const size_t authority_end = target.find_first_of("/?", authority_start);
  const std::string_view authority =
      std::string_view(target).substr(authority_start, authority_end - authority_start);
  if (authority.empty()) return "absolute-form request target without a host";
  if (authority.find('@') != std::string_view::npos) {
    return "absolute-form request target with userinfo (user@host)";
  }
  if (!isValidAuthority(authority)) return "absolute-form request target with an invalid host";
  if (headers.count("host") > 1) return "more than one host header";
  std::string host(authority);
  if (authority_end == std::string::npos) {
    target = method == "OPTIONS" ? "*" : "/";
  } else if (target[authority_end] == '?') {
    target.replace(0, authority_end, "/");
  } else {
    target.erase(0, authority_end);
  }
  headers.remove("host");
  headers.add("host", host);
  return {};
}

std::string_view requestHeadError(std::string_view method, std::string_view target,
                                  int http_minor, const HeaderMap& headers) {
  if (target.empty() || (target.front() != '/' && !(target == "*" && method == "OPTIONS"))) {
    // absolute-form is for forward proxies and authority-form for CONNECT; a reverse proxy that
    // routed on the path while the upstream read the URL's authority would be talking past it.
    return "request target must be a path starting with '/' (origin-form)";
  }
  if (target.find('#') != std::string_view::npos) {
    return "request target must not contain a fragment ('#')";
  }
  size_t hosts = 0;
  for (const auto& [name, value] : headers) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), isTokenChar)) {
      return "invalid header name (empty, or whitespace before the colon)";
    }
    if (std::any_of(value.begin(), value.end(),
                    [](char c) { return c == '\r' || c == '\n' || c == '\0'; })) {
      return "header value with CR, LF or NUL (obs-fold line folding is not accepted)";
    }
    if (name == "host") {
      if (++hosts > 1) return "more than one host header";
      if (!isValidAuthority(value)) return "invalid host header value";
    }
    if (name == "transfer-encoding" && http_minor == 0) {
      return "transfer-encoding in an HTTP/1.0 request";
    }
  }
  return {};
}

bool isUnknownMethod(std::string_view input, size_t error_offset) {
  if (error_offset >= input.size() || !isTokenChar(input[error_offset])) return false;
  size_t start = error_offset;
  while (start > 0 && isTokenChar(input[start - 1])) --start;
  // A method starts the message: the input's start, or after the line end of the one before.
  if (start > 0 && input[start - 1] != '\n') return false;
  size_t end = error_offset;
  while (end < input.size() && isTokenChar(input[end])) ++end;
  if (end >= input.size() || input[end] != ' ') return false;
  // The rest of a request line: a target (visible bytes) and " HTTP/".
  size_t target_end = end + 1;
  while (target_end < input.size() && input[target_end] > ' ' && input[target_end] != '\x7f') {
    ++target_end;
  }
  return target_end > end + 1 && input.substr(target_end).starts_with(" HTTP/");
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

void serializeHeaders(const HeaderMap& headers, std::string& out) {
  size_t total = out.size();
  for (const auto& [name, value] : headers) total += name.size() + value.size() + 4;
  out.reserve(total);
  for (const auto& [name, value] : headers) {
    out.append(name).append(": ", 2).append(value).append("\r\n", 2);
  }
}

}  // namespace remora::http
