// ModelSpec: the shape of one model's KV cache, fixed per namespace (DESIGN §1).
// The types are public API: tierkv/model_spec.h.
#pragma once

#include "common/status.h"
#include "tierkv/model_spec.h"
