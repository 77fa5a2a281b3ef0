// RedisConnection: one connection to one Redis node over a Transport (plain TCP or
// TLS, redis_transport.h). hiredis is used only for the protocol: commands are
// formatted by redisFormatCommandArgv and replies parsed by its redisReader; the
// bytes move through the Transport, so plain and TLS share this code.
//
// Pipelining: Append any number of commands, Flush once, then GetReply once per
// command, in order. Any error (I/O, timeout, protocol) breaks the connection:
// broken() is then true and the owner drops it.
//
// Thread-safety: none; one thread uses a connection at a time.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/remote/redis_transport.h"

struct redisReply;
struct redisReader;

namespace tierkv::storage::remote {

struct ReplyDeleter {
  void operator()(redisReply* r) const;
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

class RedisConnection {
 public:
  // Connects within connect_timeout (TLS when `tls`); command_timeout bounds each
  // wait for the node afterwards (a node silent that long is a timeout).
  static Result<std::unique_ptr<RedisConnection>> Connect(const std::string& host, int port,
                                                          std::chrono::milliseconds connect_timeout,
                                                          std::chrono::milliseconds command_timeout,
                                                          const TlsContext* tls);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  void Append(std::span<const std::string> argv);
  void Append(std::initializer_list<std::string> argv) { Append(std::span(argv.begin(), argv.size())); }
  // Sends what was appended.
  Status Flush();
  // The next reply. kIOError "...: timeout" or kUnavailable (connection closed,
  // protocol error); both break the connection.
  Result<ReplyPtr> GetReply();
  // Append + Flush + GetReply.
  Result<ReplyPtr> Command(std::span<const std::string> argv);

  bool broken() const { return broken_; }

 private:
  RedisConnection(std::unique_ptr<Transport> t, std::chrono::milliseconds command_timeout);
  Status Broke(Status st) {
    broken_ = true;
    return st;
  }

  std::unique_ptr<Transport> transport_;
  const std::chrono::milliseconds command_timeout_;
  redisReader* reader_;
  std::string out_;            // appended commands not yet sent
  std::vector<char> in_;       // read buffer
  bool broken_ = false;
};

}  // namespace tierkv::storage::remote
