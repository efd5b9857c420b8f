// codec.cc — request bytes and response reading for the three targets. See codec.h.
#include "codec.h"

#include <rapidjson/document.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "keel/kv/native_codec.h"

namespace keel::bench {

namespace {

constexpr char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Error texts end up as keys of the error table; keep them short and one line.
std::string short_text(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 80)) out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  return out;
}

void append_request_line(std::string& out, std::string_view method, std::string_view host) {
  out.append(method);
  out.push_back(' ');
  (void)host;
}

void append_headers(std::string& out, std::string_view host) {
  out.append(" HTTP/1.1\r\nHost: ");
  out.append(host);
  out.append("\r\n");
}

bool parse_json(rapidjson::Document& doc, std::string_view body) {
  doc.Parse(body.data(), body.size());
  return !doc.HasParseError() && doc.IsObject();
}

// int64 fields arrive as JSON strings ("123") from the gateway; accept numbers too.
std::optional<std::int64_t> json_int64(const rapidjson::Value& object, const char* name) {
  auto it = object.FindMember(name);
  if (it == object.MemberEnd()) return std::nullopt;
  if (it->value.IsInt64()) return it->value.GetInt64();
  if (it->value.IsString()) return std::strtoll(it->value.GetString(), nullptr, 10);
  return std::nullopt;
}

}  // namespace

const char* target_name(target_kind target) noexcept {
  switch (target) {
    case target_kind::keel: return "keel";
    case target_kind::v2: return "v2";
    case target_kind::v3json: return "v3json";
  }
  return "?";
}

std::string base64_encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    std::uint32_t v = (std::uint8_t(data[i]) << 16) | (std::uint8_t(data[i + 1]) << 8) | std::uint8_t(data[i + 2]);
    out.push_back(base64_alphabet[v >> 18]);
    out.push_back(base64_alphabet[(v >> 12) & 63]);
    out.push_back(base64_alphabet[(v >> 6) & 63]);
    out.push_back(base64_alphabet[v & 63]);
  }
  std::size_t rest = data.size() - i;
  if (rest > 0) {
    std::uint32_t v = std::uint8_t(data[i]) << 16;
    if (rest == 2) v |= std::uint8_t(data[i + 1]) << 8;
    out.push_back(base64_alphabet[v >> 18]);
    out.push_back(base64_alphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? base64_alphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  auto value_of = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  std::uint32_t bits = 0;
  int have = 0;
  for (char c : text) {
    if (c == '=') break;
    int v = value_of(c);
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    have += 6;
    if (have >= 8) {
      have -= 8;
      out.push_back(static_cast<char>((bits >> have) & 0xFF));
    }
  }
  return out;
}

void append_url_escaped(std::string& out, std::string_view text, bool keep_slash) {
  static constexpr char hex[] = "0123456789ABCDEF";
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    bool plain = (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') ||
                 u == '-' || u == '_' || u == '.' || u == '~' || (keep_slash && u == '/');
    if (plain) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(hex[u >> 4]);
      out.push_back(hex[u & 15]);
    }
  }
}

std::string make_key(std::string_view prefix, std::uint64_t index, std::size_t key_size) {
  char digits[24];
  int n = std::snprintf(digits, sizeof digits, "%" PRIu64, index);
  std::string key(prefix);
  std::size_t want = key_size > prefix.size() ? key_size - prefix.size() : 0;
  if (want > static_cast<std::size_t>(n)) key.append(want - static_cast<std::size_t>(n), '0');
  key.append(digits, static_cast<std::size_t>(n));
  return key;
}

// ---- v2 ----------------------------------------------------------------------------------

namespace {
void append_v2_path(std::string& out, std::string_view key) {
  out.append("/v2/keys");
  if (key.empty() || key.front() != '/') out.push_back('/');
  append_url_escaped(out, key, true);
}
}  // namespace

std::string v2_put_body(std::string_view value) {
  std::string body = "value=";
  append_url_escaped(body, value, false);
  return body;
}

void v2_put(std::string& out, std::string_view host, std::string_view key, std::string_view value,
            std::optional<bool> prev_exist) {
  v2_put_with_body(out, host, key, v2_put_body(value), prev_exist);
}

void v2_put_with_body(std::string& out, std::string_view host, std::string_view key, std::string_view body,
                      std::optional<bool> prev_exist) {
  append_request_line(out, "PUT", host);
  append_v2_path(out, key);
  if (prev_exist) out.append(*prev_exist ? "?prevExist=true" : "?prevExist=false");
  append_headers(out, host);
  out.append("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ");
  out.append(std::to_string(body.size()));
  out.append("\r\n\r\n");
  out.append(body);
}

void v2_get(std::string& out, std::string_view host, std::string_view key, bool quorum) {
  append_request_line(out, "GET", host);
  append_v2_path(out, key);
  out.append(quorum ? "?quorum=true" : "?quorum=false");
  append_headers(out, host);
  out.append("\r\n");
}

void v2_watch(std::string& out, std::string_view host, std::string_view key, std::uint64_t wait_index,
              bool recursive) {
  append_request_line(out, "GET", host);
  append_v2_path(out, key);
  out.append("?wait=true");
  if (wait_index > 0) {
    out.append("&waitIndex=");
    out.append(std::to_string(wait_index));
  }
  if (recursive) out.append("&recursive=true");
  append_headers(out, host);
  out.append("\r\n");
}

outcome v2_classify(int http_status, std::string_view body) {
  if (http_status == 200 || http_status == 201) return outcome::success();
  std::string kind = "HTTP " + std::to_string(http_status);
  rapidjson::Document doc;
  if (parse_json(doc, body)) {
    auto code = doc.FindMember("errorCode");
    if (code != doc.MemberEnd() && code->value.IsInt()) {
      kind += " etcd error " + std::to_string(code->value.GetInt());
      auto message = doc.FindMember("message");
      if (message != doc.MemberEnd() && message->value.IsString()) {
        kind += " (" + short_text(message->value.GetString()) + ")";
      }
    }
  }
  return outcome::failure(std::move(kind));
}

std::optional<std::string> v2_node_value(std::string_view body) {
  rapidjson::Document doc;
  if (!parse_json(doc, body)) return std::nullopt;
  auto node = doc.FindMember("node");
  if (node == doc.MemberEnd() || !node->value.IsObject()) return std::nullopt;
  auto value = node->value.FindMember("value");
  if (value == node->value.MemberEnd() || !value->value.IsString()) return std::nullopt;
  return std::string(value->value.GetString(), value->value.GetStringLength());
}

std::optional<v2_event> v2_parse_event(std::string_view body) {
  rapidjson::Document doc;
  if (!parse_json(doc, body)) return std::nullopt;
  auto node = doc.FindMember("node");
  if (node == doc.MemberEnd() || !node->value.IsObject()) return std::nullopt;
  auto index = json_int64(node->value, "modifiedIndex");
  if (!index || *index <= 0) return std::nullopt;
  v2_event event;
  event.modified_index = static_cast<std::uint64_t>(*index);
  auto action = doc.FindMember("action");
  if (action != doc.MemberEnd() && action->value.IsString()) event.action = action->value.GetString();
  auto value = node->value.FindMember("value");
  if (value != node->value.MemberEnd() && value->value.IsString()) {
    event.value = std::string(value->value.GetString(), value->value.GetStringLength());
  }
  return event;
}

// ---- v3 JSON -----------------------------------------------------------------------------

void v3_post(std::string& out, std::string_view host, std::string_view path, std::string_view body) {
  append_request_line(out, "POST", host);
  out.append(path);
  append_headers(out, host);
  out.append("Content-Type: application/json\r\nContent-Length: ");
  out.append(std::to_string(body.size()));
  out.append("\r\n\r\n");
  out.append(body);
}

std::string v3_put_body(std::string_view key, std::string_view value, std::int64_t lease) {
  return v3_put_body_encoded(key, base64_encode(value), lease);
}

std::string v3_put_body_encoded(std::string_view key, std::string_view value_base64, std::int64_t lease) {
  std::string body = "{\"key\":\"";
  body.reserve(32 + key.size() * 2 + value_base64.size());
  body += base64_encode(key);
  body += "\",\"value\":\"";
  body += value_base64;
  body += '"';
  if (lease != 0) body += ",\"lease\":\"" + std::to_string(lease) + "\"";
  body += "}";
  return body;
}

std::string v3_range_body(std::string_view key, std::string_view range_end, bool serializable) {
  std::string body = "{\"key\":\"" + base64_encode(key) + "\"";
  if (!range_end.empty()) body += ",\"range_end\":\"" + base64_encode(range_end) + "\"";
  if (serializable) body += ",\"serializable\":true";
  body += "}";
  return body;
}

std::string v3_txn_put_body(const std::vector<std::pair<std::string, std::string>>& puts) {
  std::string body = "{\"success\":[";
  for (std::size_t i = 0; i < puts.size(); ++i) {
    if (i > 0) body += ",";
    body += "{\"request_put\":" + v3_put_body(puts[i].first, puts[i].second) + "}";
  }
  body += "]}";
  return body;
}

std::string v3_lease_grant_body(std::int64_t ttl_seconds) {
  return "{\"TTL\":\"" + std::to_string(ttl_seconds) + "\"}";
}

std::string v3_lease_keepalive_body(std::int64_t id) {
  return "{\"ID\":\"" + std::to_string(id) + "\"}";
}

std::string v3_watch_create_body(std::string_view key, std::string_view range_end) {
  std::string body = "{\"create_request\":{\"key\":\"" + base64_encode(key) + "\"";
  if (!range_end.empty()) body += ",\"range_end\":\"" + base64_encode(range_end) + "\"";
  body += "}}";
  return body;
}

outcome v3_classify(int http_status, std::string_view body) {
  // The gateway's unary answers start with their header; errors and stream lines do not.
  if (http_status == 200 && body.starts_with("{\"header\":")) return outcome::success();
  rapidjson::Document doc;
  bool parsed = parse_json(doc, body);
  // A streamed answer is several lines; the first says enough.
  if (!parsed) {
    std::size_t newline = body.find('\n');
    if (newline != std::string_view::npos) parsed = parse_json(doc, body.substr(0, newline));
  }
  const rapidjson::Value* error_object = parsed ? &doc : nullptr;
  if (parsed) {
    auto inner = doc.FindMember("error");
    if (inner != doc.MemberEnd() && inner->value.IsObject()) error_object = &inner->value;  // streams
  }
  bool has_error = error_object != nullptr && error_object->HasMember("code") &&
                   (error_object != &doc || doc.HasMember("error"));
  if (http_status == 200 && !has_error) return outcome::success();
  std::string kind = "HTTP " + std::to_string(http_status);
  if (error_object != nullptr && has_error) {
    auto code = error_object->FindMember("code");
    if (code != error_object->MemberEnd() && code->value.IsInt()) {
      kind += " grpc code " + std::to_string(code->value.GetInt());
    }
    auto message = error_object->FindMember("message");
    if (message != error_object->MemberEnd() && message->value.IsString()) {
      kind += " (" + short_text(message->value.GetString()) + ")";
    }
  }
  return outcome::failure(std::move(kind));
}

std::optional<std::int64_t> v3_lease_id(std::string_view body) {
  rapidjson::Document doc;
  if (!parse_json(doc, body)) return std::nullopt;
  if (auto result = doc.FindMember("result"); result != doc.MemberEnd() && result->value.IsObject()) {
    return json_int64(result->value, "ID");
  }
  return json_int64(doc, "ID");
}

std::optional<std::int64_t> v3_range_count(std::string_view body) {
  rapidjson::Document doc;
  if (!parse_json(doc, body)) return std::nullopt;
  if (!doc.HasMember("header")) return std::nullopt;
  return json_int64(doc, "count").value_or(0);
}

std::optional<v3_watch_line> v3_parse_watch_line(std::string_view line) {
  rapidjson::Document doc;
  if (!parse_json(doc, line)) return std::nullopt;
  auto result = doc.FindMember("result");
  if (result == doc.MemberEnd() || !result->value.IsObject()) return std::nullopt;
  const rapidjson::Value& r = result->value;
  v3_watch_line parsed;
  if (auto c = r.FindMember("created"); c != r.MemberEnd() && c->value.IsBool()) parsed.created = c->value.GetBool();
  if (auto c = r.FindMember("canceled"); c != r.MemberEnd() && c->value.IsBool()) parsed.canceled = c->value.GetBool();
  if (auto events = r.FindMember("events"); events != r.MemberEnd() && events->value.IsArray()) {
    for (const auto& event : events->value.GetArray()) {
      if (!event.IsObject()) continue;
      auto kv = event.FindMember("kv");
      if (kv == event.MemberEnd() || !kv->value.IsObject()) continue;
      auto value = kv->value.FindMember("value");
      std::string decoded;
      if (value != kv->value.MemberEnd() && value->value.IsString()) {
        decoded = base64_decode({value->value.GetString(), value->value.GetStringLength()}).value_or("");
      }
      parsed.values.push_back(std::move(decoded));
    }
  }
  return parsed;
}

// ---- keel frames -------------------------------------------------------------------------
// The kv module's own codec (modules/kv/client, keel/kv/native_codec.h) builds the
// payloads, so the bench sends exactly what keeld's kv handlers decode.

namespace {

void finish_frame(std::string& out, flatbuffers::FlatBufferBuilder& b, wire::frame_type type,
                  std::uint64_t request_id) {
  status appended = kv::native::append_request(out, type, request_id, b);
  KEEL_ASSERT_MSG(appended.is_ok(), "keel-bench request larger than a frame");
}

}  // namespace

void keel_put(std::string& out, flatbuffers::FlatBufferBuilder& b, std::uint64_t request_id,
              std::string_view key, std::string_view value, std::int64_t lease) {
  kv::native::encode_put(b, key, value, lease);
  finish_frame(out, b, wire::frame_type::put_request, request_id);
}

void keel_range(std::string& out, flatbuffers::FlatBufferBuilder& b, std::uint64_t request_id,
                std::string_view key, std::string_view range_end, bool serializable) {
  kv::range_request request;
  request.key = std::string(key);
  request.range_end = std::string(range_end);
  kv::native::encode(b, request, serializable);
  finish_frame(out, b, wire::frame_type::range_request, request_id);
}

void keel_txn_put(std::string& out, flatbuffers::FlatBufferBuilder& b, std::uint64_t request_id,
                  const std::vector<std::pair<std::string, std::string>>& puts) {
  kv::txn_request request;
  for (const auto& [key, value] : puts) {
    kv::put_request put;
    put.key = key;
    put.value = value;
    request.success.push_back(kv::request_op::of(std::move(put)));
  }
  kv::native::encode(b, request);
  finish_frame(out, b, wire::frame_type::txn_request, request_id);
}

void keel_lease_grant(std::string& out, flatbuffers::FlatBufferBuilder& b, std::uint64_t request_id,
                      std::int64_t ttl_seconds) {
  kv::native::encode_lease_grant(b, ttl_seconds, 0);
  finish_frame(out, b, wire::frame_type::lease_grant_request, request_id);
}

void keel_lease_keepalive(std::string& out, flatbuffers::FlatBufferBuilder& b, std::uint64_t request_id,
                          std::int64_t id) {
  kv::native::encode_lease_keep_alive(b, id);
  finish_frame(out, b, wire::frame_type::lease_keepalive_request, request_id);
}

void keel_watch_create(std::string& out, flatbuffers::FlatBufferBuilder& b, std::uint64_t request_id,
                       std::string_view key, std::string_view range_end) {
  kv::native::watch_create_request request;
  request.key = std::string(key);
  request.range_end = std::string(range_end);
  kv::native::encode(b, request);
  finish_frame(out, b, wire::frame_type::watch_create_request, request_id);
}

wire::frame_type keel_response_type(wire::frame_type request) noexcept {
  return static_cast<wire::frame_type>(static_cast<std::uint16_t>(request) + 1);
}

outcome keel_classify(const wire::frame_view& frame, wire::frame_type expected) {
  if (frame.header.is_error()) {
    kv::native::error_payload error = kv::native::decode(*flatbuffers::GetRoot<wire::Error>(frame.payload.data()));
    std::string kind = "frame error ";
    kind += errc_name(static_cast<errc>(error.code));
    if (error.grpc_code != 0) kind += " grpc code " + std::to_string(error.grpc_code);
    if (!error.message.empty()) kind += ": " + short_text(error.message);
    return outcome::failure(std::move(kind));
  }
  if (frame.header.type != expected) {
    return outcome::failure("frame type " + std::to_string(static_cast<unsigned>(frame.header.type)) +
                            " unexpected");
  }
  return outcome::success();
}

std::optional<std::int64_t> keel_lease_id(const wire::frame_view& frame) {
  if (frame.header.is_error() || frame.header.type != wire::frame_type::lease_grant_response) return std::nullopt;
  kv::native::lease_grant_response grant;
  if (!kv::native::decode_payload(frame.header.type, frame.payload, grant).is_ok()) return std::nullopt;
  return grant.id;
}

std::optional<keel_watch_frame> keel_parse_watch(const wire::frame_view& frame) {
  if (frame.header.is_error() || frame.header.type != wire::frame_type::watch_response) return std::nullopt;
  kv::native::watch_response response;
  if (!kv::native::decode_payload(frame.header.type, frame.payload, response).is_ok()) return std::nullopt;
  keel_watch_frame parsed;
  parsed.watch_id = response.watch_id;
  parsed.created = response.created;
  parsed.canceled = response.canceled;
  parsed.cancel_reason = std::move(response.cancel_reason);
  parsed.values.reserve(response.events.size());
  for (kv::event& e : response.events) parsed.values.push_back(std::move(e.kv.value));
  return parsed;
}

}  // namespace keel::bench
