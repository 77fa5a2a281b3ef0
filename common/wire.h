// The control-plane wire protocol shared by tierkvd and libtierkv (DESIGN §2).
//
// Frame: a 4-byte little-endian body length, then the body: one UTF-8 JSON object.
// Requests carry "op" and an optional "id" (echoed in the reply). The first request
// on a connection must be {"op":"hello","version":kProtocolVersion}.
// Replies are {"ok":true, ...} or {"ok":false,"code":"<StatusCode name>","error":"..."}.
//
// Ops (version 1):
//   hello             {version, client?}            -> {version, daemon, session, uid, gid}
//   ping              {}                            -> {}
//   create_namespace  {namespace: NamespaceSpec}    -> {namespace_id, created}
//   attach            {namespace: name}             -> {namespace_id, namespace: NamespaceSpec}
//   list_namespaces   {}                            -> {namespaces: [NamespaceSpec + namespace_id]}
//   stats             {}                            -> {uptime_s, clients, namespaces, requests, metrics_url, gpu}
//   shutdown          {}                            -> {}  (admins only)
//   open_channel      {namespace, ring sizes?, staging_bytes?, gpu?...} -> layout (+ descriptors, SCM_RIGHTS)
//   get_policy        {namespace}                   -> {namespace, policy}
//   set_policy        {namespace, policy}           -> {namespace, policy}  (admins only)
//   usage             {namespace?}                  -> {namespaces: [...]}
//   clients           {}                            -> {clients: [...]}  (admins only)
//   delete_namespace  {namespace, force?}           -> {namespace, namespace_id, detached_clients, ...}  (admins only)
//   prefixes          {namespace?, limit?}          -> {namespaces: [{name, prefixes, blocks, bytes, entries}]}
//   evict_prefixes    {namespace, older_than_s?}    -> {evicted_prefixes, evicted_blocks, evicted_bytes, ...}  (admins only)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/namespace_spec.h"
#include "common/status.h"

namespace tierkv::wire {

using Json = nlohmann::json;

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 4;

// Body length in a frame header.
uint32_t DecodeFrameLength(const uint8_t header[kFrameHeaderBytes]);
// Header + body.
std::string EncodeFrame(std::string_view body);

// A linear scan, far cheaper than parsing, that refuses a body whose arrays and
// objects nest deeper than max_depth or that holds more than max_elements values
// (counted as commas and containers outside strings): kInvalidArgument naming which.
Status CheckJsonShape(std::string_view body, uint32_t max_depth, uint32_t max_elements);

// Parses a request/reply body; kInvalidArgument unless it is a JSON object.
Result<Json> ParseBody(std::string_view body);

// Serializes a body; invalid UTF-8 in strings is replaced, never thrown on.
std::string DumpBody(const Json& body);
Json ErrorReply(const Status& status);
// OK for {"ok":true}; the carried Status for an error reply; kInternal for anything else.
Status StatusFromReply(const Json& reply);

// Typed field access with errors naming the field ("namespace.model.head_dim").
Result<uint64_t> GetUint(const Json& obj, std::string_view key, std::string_view path, uint64_t max);
Result<std::string> GetString(const Json& obj, std::string_view key, std::string_view path, size_t max_len);

// Lowercase hex of n bytes, and back (kInvalidArgument on a bad string or length).
std::string ToHex(const void* data, size_t n);
Status FromHex(std::string_view hex, void* out, size_t n);

Json ToJson(const ModelSpec& m);
Json ToJson(const NamespaceSpec& ns);
// Parses and validates (NamespaceSpec::Validate) a namespace object.
Result<NamespaceSpec> NamespaceSpecFromJson(const Json& j);
Result<ModelSpec> ModelSpecFromJson(const Json& j);

}  // namespace tierkv::wire
