// The integration tests' common set-up: a client of a running tierkvd that created
// a namespace and attached to it.
#pragma once

#include <memory>
#include <string>

#include "tierkv/client.h"

namespace tierkv::testing {

// Connects to the daemon at `socket`, creates `spec` and attaches to it.
inline Result<std::unique_ptr<Client>> ConnectWithNamespace(const std::string& socket, const NamespaceSpec& spec) {
  TIERKV_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, Client::Connect(socket));
  TIERKV_RETURN_IF_ERROR(client->CreateNamespace(spec).status());
  TIERKV_RETURN_IF_ERROR(client->Attach(spec.name).status());
  return client;
}

}  // namespace tierkv::testing
