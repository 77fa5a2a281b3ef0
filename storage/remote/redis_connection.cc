#include "storage/remote/redis_connection.h"

#include <hiredis/hiredis.h>

namespace tierkv::storage::remote {
namespace {
// Bytes read per call: large values (blocks) arrive in few reads.
constexpr size_t kReadChunk = size_t{256} << 10;
}  // namespace

void ReplyDeleter::operator()(redisReply* r) const { freeReplyObject(r); }

Result<std::unique_ptr<RedisConnection>> RedisConnection::Connect(const std::string& host, int port,
                                                                  std::chrono::milliseconds connect_timeout,
                                                                  std::chrono::milliseconds command_timeout,
                                                                  const TlsContext* tls) {
  ASSIGN_OR_RETURN(std::unique_ptr<Transport> t, ConnectTransport(host, port, connect_timeout, tls));
  return std::unique_ptr<RedisConnection>(new RedisConnection(std::move(t), command_timeout));
}

RedisConnection::RedisConnection(std::unique_ptr<Transport> t, std::chrono::milliseconds command_timeout)
    : transport_(std::move(t)), command_timeout_(command_timeout), reader_(redisReaderCreate()), in_(kReadChunk) {
  TIERKV_CHECK(reader_ != nullptr);
}

RedisConnection::~RedisConnection() { redisReaderFree(reader_); }

void RedisConnection::Append(std::span<const std::string> argv) {
  std::vector<const char*> a;
  std::vector<size_t> l;
  a.reserve(argv.size());
  l.reserve(argv.size());
  for (const std::string& s : argv) {
    a.push_back(s.data());
    l.push_back(s.size());
  }
  char* cmd = nullptr;
  const int n = redisFormatCommandArgv(&cmd, static_cast<int>(a.size()), a.data(), l.data());
  TIERKV_CHECK(n >= 0 && cmd != nullptr);  // fails only when out of memory
  out_.append(cmd, static_cast<size_t>(n));
  redisFreeCommand(cmd);
}

Status RedisConnection::Flush() {
  if (broken_) return Unavailable("redis: connection broken");
  const Status st = transport_->WriteAll(out_, command_timeout_);
  out_.clear();
  return st.ok() ? st : Broke(st);
}

Result<ReplyPtr> RedisConnection::GetReply() {
  if (broken_) return Unavailable("redis: connection broken");
  if (!out_.empty()) RETURN_IF_ERROR(Flush());
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
      return Broke(Unavailable(std::string("redis: protocol error: ") + reader_->errstr));
    }
    if (raw) return ReplyPtr(static_cast<redisReply*>(raw));
    Result<size_t> n = transport_->ReadSome(in_, command_timeout_);
    if (!n.ok()) return Broke(n.status());
    if (redisReaderFeed(reader_, in_.data(), *n) != REDIS_OK) {
      return Broke(Unavailable(std::string("redis: protocol error: ") + reader_->errstr));
    }
  }
}

Result<ReplyPtr> RedisConnection::Command(std::span<const std::string> argv) {
  Append(argv);
  RETURN_IF_ERROR(Flush());
  return GetReply();
}

}  // namespace tierkv::storage::remote
