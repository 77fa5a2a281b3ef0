// NamespaceSpec: what a client asks for when it creates a namespace (DESIGN §1).
// The types are public API: tierkv/namespace_spec.h.
#pragma once

#include "common/model_spec.h"
#include "common/status.h"
#include "tierkv/namespace_spec.h"
