// core_schema.cc — the core keys of keel.json. Every key here is documented in
// docs/config.md; change both together. The test
// `uses_embedded_defaults_without_any_source` checks that the defaults satisfy the schema.
#include "core_schema.h"

#include "keel/limits.h"

namespace keel::config::detail {

// "shards" has maximum 64: keep it equal to the reactor's limit.
static_assert(limits::shards_max == 64, "update \"shards\".maximum in core_schema.cc");

namespace {

// URL items: the pattern is url_pattern, JSON-escaped; config also checks the port range
// in code (loader.cc) because a regex cannot say "<= 65535" readably.
constexpr std::string_view schema_text = R"json({
  "$schema": "http://json-schema.org/draft-04/schema#",
  "title": "keel.json",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "name": {
      "description": "Human-readable name for this member.",
      "type": "string",
      "default": "default"
    },
    "data-dir": {
      "description": "Path to the data directory; \"\" means \"<name>.keel\" in the working directory.",
      "type": "string",
      "default": ""
    },
    "listen-client-urls": {
      "description": "URLs to listen on for client traffic (http://host:port, comma-separated on the command line).",
      "type": "array",
      "items": {"type": "string", "pattern": "^https?://(\\[[0-9a-fA-F:.]+\\]|[^/:\\[\\] ]+):[0-9]+/?$"},
      "default": ["http://127.0.0.1:2379"]
    },
    "advertise-client-urls": {
      "description": "Client URLs of this member to advertise to the rest of the cluster and to clients.",
      "type": "array",
      "items": {"type": "string", "pattern": "^https?://(\\[[0-9a-fA-F:.]+\\]|[^/:\\[\\] ]+):[0-9]+/?$"},
      "default": ["http://127.0.0.1:2379"]
    },
    "listen-peer-urls": {
      "description": "URLs to listen on for peer traffic.",
      "type": "array",
      "items": {"type": "string", "pattern": "^https?://(\\[[0-9a-fA-F:.]+\\]|[^/:\\[\\] ]+):[0-9]+/?$"},
      "default": ["http://127.0.0.1:2380"]
    },
    "initial-advertise-peer-urls": {
      "description": "Peer URLs of this member to advertise to the rest of the cluster; they must be this member's URLs in initial-cluster.",
      "type": "array",
      "items": {"type": "string", "pattern": "^https?://(\\[[0-9a-fA-F:.]+\\]|[^/:\\[\\] ]+):[0-9]+/?$"},
      "default": ["http://localhost:2380"]
    },
    "initial-cluster": {
      "description": "Initial cluster configuration for bootstrapping: comma-separated name=peerURL pairs, a name once per URL.",
      "type": "string",
      "default": "default=http://localhost:2380"
    },
    "initial-cluster-state": {
      "description": "Initial cluster state: new (bootstrap a new cluster) or existing (join one).",
      "type": "string",
      "enum": ["new", "existing"],
      "default": "new"
    },
    "initial-cluster-token": {
      "description": "Initial cluster token, mixed into member and cluster ids so that clusters bootstrapped alike differ.",
      "type": "string",
      "default": "etcd-cluster"
    },
    "heartbeat-interval": {
      "description": "Time (in milliseconds) of a heartbeat interval.",
      "type": "integer",
      "minimum": 1,
      "default": 100
    },
    "election-timeout": {
      "description": "Time (in milliseconds) for an election to timeout; at least 5 x heartbeat-interval and at most 50000.",
      "type": "integer",
      "minimum": 1,
      "default": 1000
    },
    "discovery": {
      "description": "Discovery URL used to bootstrap the cluster; \"\" means none (use initial-cluster).",
      "type": "string",
      "default": ""
    },
    "discovery-proxy": {
      "description": "HTTP proxy to use for traffic to discovery service; \"\" means none.",
      "type": "string",
      "default": ""
    },
    "discovery-srv": {
      "description": "DNS srv domain used to bootstrap the cluster; \"\" means none.",
      "type": "string",
      "default": ""
    },
    "discovery-srv-name": {
      "description": "Suffix to the dns srv name queried when bootstrapping (_etcd-server-<name>._tcp).",
      "type": "string",
      "default": ""
    },
    "discovery-fallback": {
      "description": "Expected behavior (exit or proxy) when the discovery service fails.",
      "type": "string",
      "enum": ["exit", "proxy"],
      "default": "proxy"
    },
    "proxy": {
      "description": "Run as etcd's v2 proxy instead of a member: off, on (readwrite) or readonly.",
      "type": "string",
      "enum": ["off", "on", "readonly"],
      "default": "off"
    },
    "proxy-failure-wait": {
      "description": "Time (in milliseconds) an endpoint will be held in a failed state before being reconsidered for proxied requests.",
      "type": "integer",
      "minimum": 0,
      "default": 5000
    },
    "proxy-refresh-interval": {
      "description": "Time (in milliseconds) of the endpoints refresh interval.",
      "type": "integer",
      "minimum": 1,
      "default": 30000
    },
    "proxy-dial-timeout": {
      "description": "Time (in milliseconds) for a dial to timeout: a proxy's connect to a member is given up after this and the request goes to the next member (0: after the kernel's two SYN retries, about 7 s).",
      "type": "integer",
      "minimum": 0,
      "default": 1000
    },
    "proxy-write-timeout": {
      "description": "Time (in milliseconds) for a write to timeout (accepted for etcd's command lines; keel's proxy does not time writes out).",
      "type": "integer",
      "minimum": 0,
      "default": 5000
    },
    "proxy-read-timeout": {
      "description": "Time (in milliseconds) for a read to timeout: a proxy gives up a member that sends no byte of its answer for this long; 0 means none (long polls and watches stay silent).",
      "type": "integer",
      "minimum": 0,
      "default": 0
    },
    "snapshot-count": {
      "description": "Committed entries between snapshots (etcd's flag; on a single node more while the store's history is larger than twice this; the kv module's kv.snapshot-count wins when set).",
      "type": "integer",
      "minimum": 1,
      "default": 100000
    },
    "shards": {
      "description": "Number of reactor shards (threads); 0 means one per online CPU core.",
      "type": "integer",
      "minimum": 0,
      "maximum": 64,
      "default": 0
    },
    "modules": {
      "description": "Modules to load, by name (libkeel-<name>.so). The default is the key-value store; --modules= (empty) loads none.",
      "type": "array",
      "uniqueItems": true,
      "items": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"},
      "default": ["kv"]
    },
    "module-path": {
      "description": "Directories searched for modules before the built-in module directory.",
      "type": "array",
      "items": {"type": "string"},
      "default": []
    },
    "log-level": {
      "description": "Minimum level of log messages.",
      "type": "string",
      "enum": ["debug", "info", "warn", "error"],
      "default": "info"
    },
    "max-request-bytes": {
      "description": "Maximum client request size in bytes the server will accept.",
      "type": "integer",
      "minimum": 1024,
      "default": 1572864
    },
    "enable-v2": {
      "description": "Accepted for etcd flag compatibility.",
      "type": "boolean",
      "default": true
    },
    "native-port-enabled": {
      "description": "Serve keel's native FlatBuffers protocol next to the etcd API.",
      "type": "boolean",
      "default": true
    }
  }
})json";

// The draft-04 meta-schema (json-schema.org/draft-04/schema) without "id" and "$schema",
// which rapidjson 1.1 would not resolve; "$ref"s are local. Module schemas are checked
// against it so that {"type": 5} is an error, not a silently ignored keyword.
constexpr std::string_view meta_schema_text = R"json({
  "description": "Core schema meta-schema (draft-04)",
  "definitions": {
    "schemaArray": {"type": "array", "minItems": 1, "items": {"$ref": "#"}},
    "positiveInteger": {"type": "integer", "minimum": 0},
    "positiveIntegerDefault0": {"allOf": [{"$ref": "#/definitions/positiveInteger"}, {"default": 0}]},
    "simpleTypes": {"enum": ["array", "boolean", "integer", "null", "number", "object", "string"]},
    "stringArray": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": true}
  },
  "type": "object",
  "properties": {
    "id": {"type": "string"},
    "$schema": {"type": "string"},
    "title": {"type": "string"},
    "description": {"type": "string"},
    "default": {},
    "multipleOf": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
    "maximum": {"type": "number"},
    "exclusiveMaximum": {"type": "boolean", "default": false},
    "minimum": {"type": "number"},
    "exclusiveMinimum": {"type": "boolean", "default": false},
    "maxLength": {"$ref": "#/definitions/positiveInteger"},
    "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
    "pattern": {"type": "string"},
    "additionalItems": {"anyOf": [{"type": "boolean"}, {"$ref": "#"}], "default": {}},
    "items": {"anyOf": [{"$ref": "#"}, {"$ref": "#/definitions/schemaArray"}], "default": {}},
    "maxItems": {"$ref": "#/definitions/positiveInteger"},
    "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
    "uniqueItems": {"type": "boolean", "default": false},
    "maxProperties": {"$ref": "#/definitions/positiveInteger"},
    "minProperties": {"$ref": "#/definitions/positiveIntegerDefault0"},
    "required": {"$ref": "#/definitions/stringArray"},
    "additionalProperties": {"anyOf": [{"type": "boolean"}, {"$ref": "#"}], "default": {}},
    "definitions": {"type": "object", "additionalProperties": {"$ref": "#"}, "default": {}},
    "properties": {"type": "object", "additionalProperties": {"$ref": "#"}, "default": {}},
    "patternProperties": {"type": "object", "additionalProperties": {"$ref": "#"}, "default": {}},
    "dependencies": {"type": "object", "additionalProperties": {"anyOf": [{"$ref": "#"}, {"$ref": "#/definitions/stringArray"}]}},
    "enum": {"type": "array", "minItems": 1, "uniqueItems": true},
    "type": {"anyOf": [
      {"$ref": "#/definitions/simpleTypes"},
      {"type": "array", "items": {"$ref": "#/definitions/simpleTypes"}, "minItems": 1, "uniqueItems": true}]},
    "format": {"type": "string"},
    "allOf": {"$ref": "#/definitions/schemaArray"},
    "anyOf": {"$ref": "#/definitions/schemaArray"},
    "oneOf": {"$ref": "#/definitions/schemaArray"},
    "not": {"$ref": "#"}
  },
  "dependencies": {"exclusiveMaximum": ["maximum"], "exclusiveMinimum": ["minimum"]},
  "default": {}
})json";

}  // namespace

std::string_view core_schema_json() { return schema_text; }
std::string_view meta_schema_json() { return meta_schema_text; }

}  // namespace keel::config::detail
