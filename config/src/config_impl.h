// config_impl.h — what a keel::config holds: the effective configuration document.
#pragma once

#include "json.h"
#include "keel/config/config.h"

namespace keel::config {

struct config::impl {
  detail::json_document document;  // an object, keys in schema order, defaults filled
};

}  // namespace keel::config
