#pragma once

// Integration-test harness: real binaries over loopback.
//
//   TempDir tmp;                              // per-test dir; kept if the test fails
//   FakeUpstream up(tmp, "a");  ASSERT_TRUE(up.start());
//   RemoraProcess remora(tmp);  ASSERT_TRUE(remora.start(kYaml, {{"UP", up.address()}}));
//   HttpClient client = remora.client();
//   Response r = client.get("/hello");        // r.status, r.header("x"), r.body
//   EXPECT_TRUE(waitFor([&] { return up.stats()->requests == 1; }, Duration(2000)));

#include "fake_upstream.h"   // IWYU pragma: export
#include "http_client.h"     // IWYU pragma: export
#include "load.h"            // IWYU pragma: export
#include "process.h"         // IWYU pragma: export
#include "remora_process.h"  // IWYU pragma: export
#include "util.h"            // IWYU pragma: export
