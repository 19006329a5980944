#!/usr/bin/env python3
"""Writes the seed corpus of request_fuzzer (corpus/request_fuzzer/seed-*).

Each seed is: one byte choosing how the client cuts its bytes into writes and how it ends, one
byte choosing what the in-process upstream answers (see UpstreamMode in request_fuzzer.cc), then
the client's bytes; for the "raw" upstream mode, the upstream's response follows a marker.
Run it again after changing the list; files named regression-* are kept as they are.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "request_fuzzer")
MARKER = b"\x00UPSTREAM\x00"

# Upstream modes, in UpstreamMode order.
OK, CHUNKED, CLOSE_DELIMITED, DOWN, CONTINUE_204, RESET, HANG, RAW, NOT_MODIFIED, LARGE = range(10)
# Client behaviour: low nibble picks the write size (0 = one write, 1 = one byte at a time,
# 5 = 7 bytes, ...); 0x30 = reset the connection right after sending; 0x40 = read through a
# receive window of 2 KiB.
WHOLE, BYTES, SEVENS, ABORT, SMALL_WINDOW = 0x00, 0x01, 0x05, 0x30, 0x40

H = b"host: x\r\n"
requests = {
    "get": b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    "get-query": b"GET /a/b?c=d&e=%20 HTTP/1.1\r\n" + H + b"user-agent: fuzz\r\n\r\n",
    "api-canary": b"GET /api/v1 HTTP/1.1\r\n" + H + b"x-canary: 1\r\nx-request-id: abc\r\n\r\n",
    "exact": b"GET /exact HTTP/1.1\r\n" + H + b"\r\n",
    "head": b"HEAD / HTTP/1.1\r\n" + H + b"\r\n",
    "post-cl": b"POST /up HTTP/1.1\r\n" + H + b"content-length: 5\r\n\r\nhello",
    "post-chunked": b"POST /up HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6;ext=v\r\n world\r\n0\r\ntrailer: t\r\n\r\n",
    "post-expect": b"POST /up HTTP/1.1\r\n" + H + b"expect: 100-continue\r\ncontent-length: 3\r\n\r\nabc",
    "pipelined": b"GET /1 HTTP/1.1\r\n" + H + b"\r\nGET /2 HTTP/1.1\r\n" + H +
                 b"\r\nPOST /3 HTTP/1.1\r\n" + H + b"content-length: 2\r\n\r\nhi",
    "http10": b"GET /old HTTP/1.0\r\n\r\n",
    "http10-keepalive": b"GET /old HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET /old2 HTTP/1.0\r\n\r\n",
    "connection-close": b"GET / HTTP/1.1\r\n" + H + b"connection: close\r\n\r\n",
    "absolute-form-ok": b"GET http://orders.internal:8080/a?b=c HTTP/1.1\r\nhost: elsewhere\r\n\r\n"
                     b"OPTIONS HTTP://orders HTTP/1.1\r\n\r\nGET http://u@x/ HTTP/1.1\r\n\r\n",
    "bad-host": b"GET / HTTP/1.1\r\nhost: x/y@z\r\n\r\n",
    "empty-values": b"GET / HTTP/1.1\r\nx-empty:\r\n" + H + b"x-blank: \r\nx-last:\r\n\r\n",
    "hop-by-hop": b"GET / HTTP/1.1\r\n" + H + b"connection: x-drop, keep-alive\r\nx-drop: 1\r\n"
                  b"keep-alive: 5\r\nte: trailers\r\nupgrade: h2c\r\nproxy-connection: x\r\n\r\n",
    "upgrade": b"GET /ws HTTP/1.1\r\n" + H + b"connection: upgrade\r\nupgrade: websocket\r\n\r\n"
               b"GET /after HTTP/1.1\r\n" + H + b"\r\n",
    "retry": b"GET /retry HTTP/1.1\r\n" + H + b"\r\n",
    "retry-post": b"POST /retry HTTP/1.1\r\n" + H + b"content-length: 4\r\n\r\nbody",
    "dead": b"GET /dead HTTP/1.1\r\n" + H + b"\r\n",
    "fallback-cluster": b"GET /fb HTTP/1.1\r\n" + H + b"\r\n",
    "rate-limited": b"GET /rl HTTP/1.1\r\n" + H + b"\r\nGET /rl HTTP/1.1\r\n" + H + b"\r\n",
    "bulkhead": b"GET /bulk HTTP/1.1\r\n" + H + b"x-remora-priority: critical\r\n\r\n",
    "xff": b"GET / HTTP/1.1\r\n" + H + b"x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: https\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "connect": b"CONNECT example.com:443 HTTP/1.1\r\n" + H + b"\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    # Request smuggling and malformed framing.
    "cl-te": b"POST / HTTP/1.1\r\n" + H + b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-cl": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
    "cl-dup-same": b"POST / HTTP/1.1\r\n" + H + b"content-length: 5\r\ncontent-length: 5\r\n\r\nhello",
    "cl-dup-diff": b"POST / HTTP/1.1\r\n" + H + b"content-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
    "cl-list": b"POST / HTTP/1.1\r\n" + H + b"content-length: 5, 5\r\n\r\nhello",
    "cl-negative": b"POST / HTTP/1.1\r\n" + H + b"content-length: -1\r\n\r\n",
    "cl-overflow": b"POST / HTTP/1.1\r\n" + H + b"content-length: 184467440737095516160\r\n\r\n",
    "te-gzip-chunked": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-identity": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-twice": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-http10": b"POST / HTTP/1.0\r\n" + H + b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-obs-fold": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"x-a: 1\r\n folded\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\n" + H + b"x-a : 1\r\n\r\n",
    "space-before-colon-cl": b"POST / HTTP/1.1\r\n" + H + b"content-length : 5\r\n\r\nhello",
    "empty-header-name": b"GET / HTTP/1.1\r\n" + H + b": v\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\n" + H + b"x-a: a\x00b\r\n\r\n",
    "cr-in-value": b"GET / HTTP/1.1\r\n" + H + b"x-a: a\rb\r\n\r\n",
    "lf-only": b"GET / HTTP/1.1\n" + b"host: x\n\n",
    "host-twice": b"GET / HTTP/1.1\r\n" + H + b"host: y\r\n\r\n",
    "chunk-overflow": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n",
    "chunk-negative": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n",
    "chunk-junk": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\n\r\n3g\r\nabc\r\n0\r\n\r\n",
    "chunk-0x": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    "chunk-short": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\n\r\n5\r\nabc\r\n0\r\n\r\n",
    "absolute-form": b"GET http://evil.example/x HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk-get": b"GET * HTTP/1.1\r\n" + H + b"\r\n",
    "fragment": b"GET /a#frag HTTP/1.1\r\n" + H + b"\r\n",
    "http2-version": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "http09": b"GET /\r\n\r\n",
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "big-header": b"GET / HTTP/1.1\r\n" + H + b"x-big: " + b"a" * 5000 + b"\r\n\r\n",
    "long-uri": b"GET /" + b"u" * 5000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "many-headers": b"GET / HTTP/1.1\r\n" + H + b"".join(b"x-%d: v\r\n" % i for i in range(150)) + b"\r\n",
    "incomplete-head": b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ",
    "incomplete-body": b"POST / HTTP/1.1\r\n" + H + b"content-length: 100\r\n\r\nonly a part",
}

# Requests whose answer depends on the upstream: sent against several upstream modes.
upstream_variants = ["get", "head", "post-cl", "post-chunked", "pipelined", "http10", "retry",
                     "retry-post", "fallback-cluster", "post-expect"]

raw_responses = {
    "raw-ok": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    "raw-chunked-bad": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "raw-cl-te": b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "raw-garbage": b"SSH-2.0-OpenSSH_9.2\r\n",
    "raw-101": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
    "raw-1xx-loop": b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
    "raw-headers-injection": b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 0\r\n\r\n",
    "raw-truncated": b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort",
    "raw-204-body": b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello",
    "raw-status-999": b"HTTP/1.1 999 Whatever\r\ncontent-length: 0\r\n\r\n",
    "raw-http10": b"HTTP/1.0 200 OK\r\n\r\nbody until close",
    # llhttp lets a space through in response header names: dropped before the colon, 502 inside.
    "raw-space-before-colon": b"HTTP/1.1 200 OK\r\nx-a : 1\r\nx-b:  2\r\ncontent-length: 0\r\n\r\n",
    "raw-space-in-name": b"HTTP/1.1 200 OK\r\nx a: 1\r\ncontent-length: 0\r\n\r\n",
    "raw-empty-values": b"HTTP/1.1 200 OK\r\nx-e:\r\nx-f: \r\ncontent-length: 0\r\n\r\n",
}


def write(name, data):
    with open(os.path.join(OUT, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.startswith("seed-"):
            os.remove(os.path.join(OUT, f))
    for name, req in requests.items():
        write(name, bytes([WHOLE, OK]) + req)
        write(name + "-bytes", bytes([BYTES if len(req) < 400 else SEVENS, OK]) + req)
    for name in upstream_variants:
        req = requests[name]
        for mode_name, mode in [("chunked", CHUNKED), ("close", CLOSE_DELIMITED), ("503", DOWN),
                                ("100-204", CONTINUE_204), ("reset", RESET), ("hang", HANG),
                                ("304", NOT_MODIFIED), ("large", LARGE)]:
            write(f"{name}-up-{mode_name}", bytes([SEVENS, mode]) + req)
    for name in ["get", "head", "pipelined", "http10", "post-chunked"]:
        write(f"{name}-small-window-large", bytes([SMALL_WINDOW, LARGE]) + requests[name])
        write(f"{name}-small-window-chunked", bytes([SMALL_WINDOW | SEVENS, CHUNKED]) + requests[name])
    write("get-abort", bytes([ABORT, OK]) + requests["get"])
    write("post-abort", bytes([ABORT | SEVENS, HANG]) + requests["post-cl"])
    write("large-abort", bytes([ABORT, LARGE]) + requests["get"])
    for name, resp in raw_responses.items():
        write(f"get-{name}", bytes([WHOLE, RAW]) + requests["get"] + MARKER + resp)
    write("head-raw-ok", bytes([WHOLE, RAW]) + requests["head"] + MARKER + raw_responses["raw-ok"])
    write("http10-raw-http10", bytes([WHOLE, RAW]) + requests["http10"] + MARKER + raw_responses["raw-http10"])


if __name__ == "__main__":
    main()
