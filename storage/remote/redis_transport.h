// The byte stream under a Redis connection: plain TCP or TLS (OpenSSL), behind one
// interface. Debian's hiredis 0.14 has no TLS; tierkv uses hiredis only to format
// commands and parse replies (redis_connection.h) and moves the bytes itself, so
// plain and TLS connections share every line above this one.
//
// Sockets are non-blocking; every wait is a poll() with a limit:
//   - Connect: TCP connect and (TLS) the whole handshake within connect_timeout;
//   - WriteAll / ReadSome: the peer may stay silent at most `idle` per wait (the
//     semantics hiredis's redisSetTimeout had: a slow but moving stream is fine).
// TLS: the peer's certificate chain is verified against the CA file, and its name
// against TlsOptions::server_name when set, else against the address connected to
// (an IP address: the certificate's IP SANs; a host name: its DNS names).
// docs/decisions/0014-remote-tier.md (items 15-17).
//
// Thread-safety: a Transport is used by one thread at a time; a TlsContext is
// immutable after Create and shared by every connection.
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

struct ssl_ctx_st;

namespace tierkv::storage::remote {

struct TlsOptions {
  std::string ca_file;      // PEM: the CA(s) that sign the nodes' certificates (required)
  std::string cert_file;    // PEM: a client certificate (with key_file; optional)
  std::string key_file;     // PEM: its private key
  std::string server_name;  // the name every node's certificate must carry ("": the address)
};

class TlsContext {
 public:
  // Loads the CA, and the client certificate and key when given (they must match).
  // kInvalidArgument naming the file that is missing, unreadable or not PEM.
  static Result<std::shared_ptr<const TlsContext>> Create(const TlsOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  ssl_ctx_st* ctx() const { return ctx_; }
  const std::string& server_name() const { return server_name_; }

 private:
  TlsContext(ssl_ctx_st* ctx, std::string server_name) : ctx_(ctx), server_name_(std::move(server_name)) {}
  ssl_ctx_st* const ctx_;
  const std::string server_name_;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Writes every byte. kIOError "timeout" when the peer did not take bytes for
  // `idle`; kUnavailable when the connection failed.
  virtual Status WriteAll(std::string_view data, std::chrono::milliseconds idle) = 0;
  // Reads at least one byte into buf (returns how many). Errors as WriteAll's; a
  // closed connection is kUnavailable.
  virtual Result<size_t> ReadSome(std::span<char> buf, std::chrono::milliseconds idle) = 0;
};

// Connects to host:port (TCP_NODELAY) and, with `tls`, does the TLS handshake, all
// within connect_timeout. kUnavailable (with "tls: ..." for a failed handshake or
// certificate verification) or kIOError "timeout".
Result<std::unique_ptr<Transport>> ConnectTransport(const std::string& host, int port,
                                                    std::chrono::milliseconds connect_timeout,
                                                    const TlsContext* tls);

}  // namespace tierkv::storage::remote
