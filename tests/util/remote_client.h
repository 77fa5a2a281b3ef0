// What the remote-tier integration tests (remote_tier_test, remote_tls_test) share:
// a channel to a namespace with a model identity, the daemon's R counters, and the
// wait for R's background writes.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "client/client_internal.h"
#include "tierkv/client.h"

namespace tierkv::testing {

// Creates (on the client's daemon) a namespace of `model` with a model identity and
// opens a channel to it; null (and a test failure) when any step fails.
inline std::unique_ptr<DataChannel> OpenRemoteChannel(Client& c, const std::string& ns, const ModelSpec& model,
                                                      const std::string& model_id) {
  NamespaceSpec spec;
  spec.name = ns;
  spec.model = model;
  spec.model_id = model_id;
  auto created = c.CreateNamespace(spec);
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_TRUE(c.Attach(ns).ok());
  auto ch = c.OpenChannel(ns, {.staging_bytes = 1 << 20});
  EXPECT_TRUE(ch.ok()) << ch.status().ToString();
  return ch.ok() ? std::move(ch).value() : nullptr;
}

// The "remote" object of the daemon's stats (R's state and counters).
inline nlohmann::json RemoteStats(Client& c) {
  auto s = internal::Call(c, {{"op", "stats"}});
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? (*s)["remote"] : nlohmann::json();
}

// Waits (at most 10 s, then fails the test) until the daemon's R has written
// `target` blocks in all.
inline void WaitForRemotePuts(Client& c, uint64_t target) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (RemoteStats(c)["puts"].get<uint64_t>() < target) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << RemoteStats(c).dump();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace tierkv::testing
