// v3_gateway.cc — etcd 3.4's v3 JSON gateway (grpc-gateway 1.9): /v3/kv/*, /v3/watch,
// /v3/lease/*, /v3/maintenance/status, and the /v3beta aliases. Parsing and formatting
// run on the connection's shard; the operations run through the engine (core.h).
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <cerrno>
#include <cstdlib>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include "codec.h"
#include "core.h"
#include "keel/reactor/http.h"
#include "keel/reactor/io.h"

namespace keel::kv_module {

namespace {

// What an operation hands back to the HTTP handler: a status and the JSON body.
struct reply {
  int http_status = 200;
  std::string body;
};

// ---- JSON output ----------------------------------------------------------------------

void append_int_string(std::string& out, const char* name, std::int64_t value, bool& first) {
  if (!first) out += ',';
  first = false;
  out += '"';
  out += name;
  out += "\":\"";
  out += std::to_string(value);
  out += '"';
}

void append_bytes(std::string& out, const char* name, const std::string& bytes, bool& first) {
  if (!first) out += ',';
  first = false;
  out += '"';
  out += name;
  out += "\":\"";
  out += base64_encode(bytes);  // the base64 alphabet needs no JSON escaping
  out += '"';
}

// A zero revision is omitted, as every zero field (etcd's compacted-watch response has none).
void append_header(std::string& out, std::int64_t revision) {
  const identity& id = ids();
  out += "\"header\":{\"cluster_id\":\"" + std::to_string(id.cluster_id) + "\",\"member_id\":\"" +
         std::to_string(id.member_id) + "\"";
  if (revision != 0) out += ",\"revision\":\"" + std::to_string(revision) + "\"";
  out += ",\"raft_term\":\"" + std::to_string(id.raft_term) + "\"}";
}

// mvccpb.KeyValue as grpc-gateway prints it: zero and empty fields omitted.
void append_key_value(std::string& out, const kv::key_value& kv) {
  out += '{';
  bool first = true;
  if (!kv.key.empty()) append_bytes(out, "key", kv.key, first);
  if (kv.create_revision != 0) append_int_string(out, "create_revision", kv.create_revision, first);
  if (kv.mod_revision != 0) append_int_string(out, "mod_revision", kv.mod_revision, first);
  if (kv.version != 0) append_int_string(out, "version", kv.version, first);
  if (!kv.value.empty()) append_bytes(out, "value", kv.value, first);
  if (kv.lease != 0) append_int_string(out, "lease", kv.lease, first);
  out += '}';
}

// The fields after the header of each response (zero and empty ones omitted).
void append_put_fields(std::string& out, const kv::put_result& put) {
  if (put.prev_kv) {
    out += ",\"prev_kv\":";
    append_key_value(out, *put.prev_kv);
  }
}

void append_range_fields(std::string& out, const kv::range_result& found) {
  if (!found.kvs.empty()) {
    out += ",\"kvs\":[";
    for (std::size_t i = 0; i < found.kvs.size(); ++i) {
      if (i) out += ',';
      append_key_value(out, found.kvs[i]);
    }
    out += ']';
  }
  if (found.more) out += ",\"more\":true";
  if (found.count != 0) out += ",\"count\":\"" + std::to_string(found.count) + "\"";
}

void append_delete_fields(std::string& out, const kv::delete_range_result& deleted) {
  if (deleted.deleted != 0) out += ",\"deleted\":\"" + std::to_string(deleted.deleted) + "\"";
  if (!deleted.prev_kvs.empty()) {
    out += ",\"prev_kvs\":[";
    for (std::size_t i = 0; i < deleted.prev_kvs.size(); ++i) {
      if (i) out += ',';
      append_key_value(out, deleted.prev_kvs[i]);
    }
    out += ']';
  }
}

// The HTTP status of a gRPC code (grpc-gateway 1.9's HTTPStatusFromCode: FailedPrecondition
// is 412 there, checked against etcd 3.4.23).
int http_status_of(int grpc_code) noexcept {
  switch (grpc_code) {
    case 3: return 400;   // InvalidArgument
    case 5: return 404;   // NotFound
    case 8: return 429;   // ResourceExhausted
    case 9: return 412;   // FailedPrecondition
    case 11: return 400;  // OutOfRange
    case 14: return 503;  // Unavailable
    default: return 500;
  }
}

// grpc-gateway's error body, with the HTTP status of its gRPC code.
reply error_reply(int grpc_code, std::string_view message) {
  reply r;
  r.http_status = http_status_of(grpc_code);
  r.body = "{\"error\":";
  keel::append_json_string(r.body, message);
  r.body += ",\"message\":";
  keel::append_json_string(r.body, message);
  r.body += ",\"code\":" + std::to_string(grpc_code) + "}";
  return r;
}

// Any failure of the engine, with etcd's gRPC code. etcd's gRPC layer words the store's
// compacted / future-revision errors "etcdserver: mvcc: ..." (rpctypes.ErrGRPCCompacted,
// ErrGRPCFutureRev); the store's messages lack the "etcdserver: " prefix.
reply failure_reply(const status& failure) {
  kv::mvcc_error mvcc = kv::mvcc_error_of(failure);
  if (mvcc == kv::mvcc_error::compacted || mvcc == kv::mvcc_error::future_revision)
    return error_reply(grpc_code_of(failure), "etcdserver: " + failure.message());
  return error_reply(grpc_code_of(failure), failure.message());
}

// ---- JSON input -------------------------------------------------------------------------
//
// etcd 3.4's gateway decodes a body with Go's encoding/json (one value: an empty body is an
// empty request, bytes after the value are not read) and golang/protobuf's jsonpb with
// AllowUnknownFields (unknown fields are ignored). Its error texts are Go's; the helpers
// below give the same texts for the common mistakes.

// Go's quoteChar (encoding/json) for the byte named in a syntax error.
std::string go_quote_char(unsigned char c) {
  if (c == '\'') return "'\\''";
  if (c == '"') return "'\"'";
  if (c == '\\') return "'\\\\'";
  if (c >= 0x20 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
  switch (c) {
    case '\a': return "'\\a'";
    case '\b': return "'\\b'";
    case '\f': return "'\\f'";
    case '\n': return "'\\n'";
    case '\r': return "'\\r'";
    case '\t': return "'\\t'";
    case '\v': return "'\\v'";
    default: break;
  }
  char text[16];
  if (c < 0x80) {
    std::snprintf(text, sizeof text, "'\\x%02x'", c);
  } else if (c <= 0xa0 || c == 0xad) {  // not printable as a rune
    std::snprintf(text, sizeof text, "'\\u%04x'", c);
  } else {  // the rune U+00XX in UTF-8
    std::snprintf(text, sizeof text, "'%c%c'", static_cast<char>(0xc0 | (c >> 6)),
                  static_cast<char>(0x80 | (c & 0x3f)));
  }
  return text;
}

// Go's json.Decoder message for a syntax error rapidjson found at `offset` of `body`.
std::string go_syntax_error(std::string_view body, rapidjson::ParseErrorCode code, std::size_t offset) {
  if (offset >= body.size()) return "unexpected EOF";
  const std::string c = go_quote_char(static_cast<unsigned char>(body[offset]));
  switch (code) {
    case rapidjson::kParseErrorObjectMissName:
      return "invalid character " + c + " looking for beginning of object key string";
    case rapidjson::kParseErrorObjectMissColon: return "invalid character " + c + " after object key";
    case rapidjson::kParseErrorObjectMissCommaOrCurlyBracket:
      return "invalid character " + c + " after object key:value pair";
    case rapidjson::kParseErrorArrayMissCommaOrSquareBracket: return "invalid character " + c + " after array element";
    case rapidjson::kParseErrorNumberMissFraction:
      return "invalid character " + c + " after decimal point in numeric literal";
    case rapidjson::kParseErrorNumberMissExponent: return "invalid character " + c + " in exponent of numeric literal";
    case rapidjson::kParseErrorStringEscapeInvalid:  // at a bad escape's backslash, or a control byte
      if (body[offset] != '\\') return "invalid character " + c + " in string literal";
      if (offset + 1 >= body.size()) return "unexpected EOF";
      return "invalid character " + go_quote_char(static_cast<unsigned char>(body[offset + 1])) +
             " in string escape code";
    case rapidjson::kParseErrorStringUnicodeEscapeInvalidHex:  // the backslash of \uXXXX
      for (std::size_t at = offset + 2; at < offset + 6; ++at) {
        if (at >= body.size()) return "unexpected EOF";
        if (!std::isxdigit(static_cast<unsigned char>(body[at])))
          return "invalid character " + go_quote_char(static_cast<unsigned char>(body[at])) +
                 " in \\u hexadecimal character escape";
      }
      break;
    case rapidjson::kParseErrorStringMissQuotationMark:  // a NUL byte in a string
      if (body[offset] == '\0') return "invalid character " + c + " in string literal";
      break;
    case rapidjson::kParseErrorDocumentEmpty:  // a NUL byte where the value starts
      return "invalid character " + c + " looking for beginning of value";
    case rapidjson::kParseErrorValueInvalid: {
      // Inside a literal (rapidjson stops at the first byte that does not match) or a number?
      std::size_t start = offset;
      while (start > 0 && ((body[start - 1] >= 'a' && body[start - 1] <= 'z') || body[start - 1] == '-')) --start;
      std::string_view word = body.substr(start, offset - start);
      if (word == "-") return "invalid character " + c + " in numeric literal";
      for (std::string_view literal : {std::string_view("true"), std::string_view("false"), std::string_view("null")})
        if (!word.empty() && word.size() < literal.size() && literal.starts_with(word))
          return "invalid character " + c + " in literal " + std::string(literal) + " (expecting " +
                 go_quote_char(static_cast<unsigned char>(literal[word.size()])) + ")";
      return "invalid character " + c + " looking for beginning of value";
    }
    default: break;
  }
  return "invalid JSON at offset " + std::to_string(offset) + ": " + rapidjson::GetParseError_En(code);
}

// How Go names a JSON value's kind in an UnmarshalTypeError.
const char* go_kind(const rapidjson::Value& v) {
  if (v.IsString()) return "string";
  if (v.IsNumber()) return "number";
  if (v.IsBool()) return "bool";
  if (v.IsArray()) return "array";
  if (v.IsObject()) return "object";
  return "null";
}

std::string go_type_error(const rapidjson::Value& v, const char* go_type) {
  return std::string("json: cannot unmarshal ") + go_kind(v) + " into Go value of type " + go_type;
}

// The fast path of go_base64_decode: decodes quanta of four alphabet characters from the
// start of `src` into `out` and returns where the first other quantum (padding, a newline,
// a bad byte or a short tail) starts. A value's bytes are almost all such quanta.
std::size_t decode_whole_quanta(std::string_view src, const std::array<std::int8_t, 256>& table,
                                std::string& out) {
  out.resize(src.size() / 4 * 3);
  char* to = out.data();
  std::size_t si = 0;
  for (; si + 4 <= src.size(); si += 4) {
    const auto* in = reinterpret_cast<const unsigned char*>(src.data() + si);
    std::int32_t a = table[in[0]], b = table[in[1]], c = table[in[2]], d = table[in[3]];
    if ((a | b | c | d) < 0) break;
    auto v = static_cast<std::uint32_t>(a << 18 | b << 12 | c << 6 | d);
    *to++ = static_cast<char>(v >> 16);
    *to++ = static_cast<char>(v >> 8);
    *to++ = static_cast<char>(v);
  }
  out.resize(static_cast<std::size_t>(to - out.data()));
  return si;
}

// Go's base64.StdEncoding.DecodeString, which encoding/json uses for []byte: padding is
// required, '\r' and '\n' are skipped, the unused low bits of the last quantum are ignored.
// On failure `bad_at` is the offset Go's CorruptInputError names.
std::optional<std::string> go_base64_decode(std::string_view src, std::size_t& bad_at) {
  static constexpr auto table = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
    return t;
  }();
  auto skip_newlines = [&src](std::size_t at) {
    while (at < src.size() && (src[at] == '\n' || src[at] == '\r')) ++at;
    return at;
  };
  std::string out;
  std::size_t si = decode_whole_quanta(src, table, out);
  bool ended = false;
  while (si < src.size() && !ended) {
    std::uint32_t quantum[4] = {0, 0, 0, 0};
    int length = 4;
    for (int j = 0; j < 4; ++j) {
      if (si == src.size()) {
        if (j == 0) return out;  // only newlines after the last quantum
        bad_at = si - static_cast<std::size_t>(j);
        return std::nullopt;
      }
      auto in = static_cast<unsigned char>(src[si++]);
      if (table[in] >= 0) {
        quantum[j] = static_cast<std::uint32_t>(table[in]);
        continue;
      }
      if (in == '\n' || in == '\r') {
        --j;
        continue;
      }
      if (in != '=' || j < 2) {
        bad_at = si - 1;
        return std::nullopt;
      }
      if (j == 2) {  // "==" expected
        si = skip_newlines(si);
        if (si == src.size()) {
          bad_at = src.size();
          return std::nullopt;
        }
        if (src[si] != '=') {
          bad_at = si - 1;
          return std::nullopt;
        }
        ++si;
      }
      si = skip_newlines(si);
      if (si < src.size()) {  // bytes after the padding
        bad_at = si;
        return std::nullopt;
      }
      length = j;
      ended = true;
      break;
    }
    std::uint32_t v = quantum[0] << 18 | quantum[1] << 12 | quantum[2] << 6 | quantum[3];
    out.push_back(static_cast<char>(v >> 16));
    if (length >= 3) out.push_back(static_cast<char>(v >> 8));
    if (length == 4) out.push_back(static_cast<char>(v));
  }
  return out;
}

// Finds a field by its proto name or its lowerCamel JSON name, as jsonpb does: Go's
// decoder keeps the last of repeated members, and with both names present the lowerCamel
// one wins.
const rapidjson::Value* field(const rapidjson::Value& object, const char* proto_name, const char* camel_name) {
  const rapidjson::Value* proto = nullptr;
  const rapidjson::Value* camel = nullptr;
  for (const auto& member : object.GetObject()) {
    std::string_view name(member.name.GetString(), member.name.GetStringLength());
    if (name == proto_name) proto = &member.value;
    else if (camel_name && name == camel_name) camel = &member.value;
  }
  return camel ? camel : proto;
}

struct parse_error {
  std::string message;
};

// Go's encoding/json decodes a []byte from an array of numbers too, one uint8 each (null
// leaves 0); the first element that is not one is the error, in Go's words.
bool read_byte_array(const rapidjson::Value& array, std::string& out, std::optional<parse_error>& error) {
  std::string bytes;
  bytes.reserve(array.Size());
  for (const rapidjson::Value& element : array.GetArray()) {
    if (element.IsNull()) {
      bytes.push_back('\0');
      continue;
    }
    if (element.IsUint() && element.GetUint() <= 255) {
      bytes.push_back(static_cast<char>(element.GetUint()));
      continue;
    }
    if (!element.IsNumber()) {
      error = parse_error{go_type_error(element, "uint8")};
      return false;
    }
    std::string literal;
    if (element.IsInt64()) {
      literal = std::to_string(element.GetInt64());
    } else if (element.IsUint64()) {
      literal = std::to_string(element.GetUint64());
    } else {
      // Go names the literal as sent; rapidjson keeps only the double: its shortest form.
      char text[32];
      auto written = std::to_chars(text, text + sizeof text, element.GetDouble());
      literal.assign(text, written.ptr);
    }
    error = parse_error{"json: cannot unmarshal number " + literal + " into Go value of type uint8"};
    return false;
  }
  out = std::move(bytes);
  return true;
}

bool read_bytes(const rapidjson::Value& object, const char* name, const char* camel, std::string& out,
                std::optional<parse_error>& error) {
  const rapidjson::Value* v = field(object, name, camel);
  if (!v || v->IsNull()) return true;
  if (v->IsArray()) return read_byte_array(*v, out, error);
  if (!v->IsString()) {
    error = parse_error{go_type_error(*v, "[]uint8")};
    return false;
  }
  std::size_t bad_at = 0;
  auto decoded = go_base64_decode(std::string_view(v->GetString(), v->GetStringLength()), bad_at);
  if (!decoded) {
    error = parse_error{"illegal base64 data at input byte " + std::to_string(bad_at)};
    return false;
  }
  out = std::move(*decoded);
  return true;
}

bool read_int64(const rapidjson::Value& object, const char* name, const char* camel, std::int64_t& out,
                std::optional<parse_error>& error) {
  const rapidjson::Value* v = field(object, name, camel);
  if (!v || v->IsNull()) return true;
  if (v->IsInt64()) {
    out = v->GetInt64();
    return true;
  }
  if (v->IsString()) {
    // jsonpb takes the string's text as a JSON value (json.Unmarshal into an int64): a
    // number, surrounding whitespace allowed; null leaves the field 0.
    std::string_view text(v->GetString(), v->GetStringLength());
    rapidjson::Document inner;
    inner.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
    if (inner.HasParseError()) {
      std::size_t at = inner.GetErrorOffset();
      if (at >= text.size()) {
        error = parse_error{"unexpected end of JSON input"};
      } else if (inner.GetParseError() == rapidjson::kParseErrorDocumentRootNotSingular) {
        error = parse_error{"invalid character " + go_quote_char(static_cast<unsigned char>(text[at])) +
                            " after top-level value"};
      } else {
        error = parse_error{go_syntax_error(text, inner.GetParseError(), at)};
      }
      return false;
    }
    if (inner.IsNull()) return true;
    if (inner.IsInt64()) {
      out = inner.GetInt64();
      return true;
    }
    if (inner.IsNumber()) {  // a fraction, an exponent or out of range: Go names the literal
      std::size_t first = text.find_first_not_of(" \t\r\n"), last = text.find_last_not_of(" \t\r\n");
      error = parse_error{"json: cannot unmarshal number " + std::string(text.substr(first, last - first + 1)) +
                          " into Go value of type int64"};
      return false;
    }
    error = parse_error{go_type_error(inner, "int64")};
    return false;
  }
  if (v->IsBool() || v->IsObject() || v->IsArray()) {
    error = parse_error{go_type_error(*v, "int64")};
    return false;
  }
  // A number that is not an int64 (fraction, exponent, out of range): Go's message names
  // the literal, which the parsed document no longer has.
  error = parse_error{std::string("bad input: field \"") + name + "\" must be an int64 (number or decimal string)"};
  return false;
}

bool read_bool(const rapidjson::Value& object, const char* name, const char* camel, bool& out,
               std::optional<parse_error>& error) {
  const rapidjson::Value* v = field(object, name, camel);
  if (!v || v->IsNull()) return true;
  if (v->IsBool()) {
    out = v->GetBool();
    return true;
  }
  error = parse_error{go_type_error(*v, "bool")};
  return false;
}

// An enum given by name or number; `names` is indexed by the enum's number; `go_type` is
// the enum's Go name, for jsonpb's message about an unknown name.
bool read_enum(const rapidjson::Value& object, const char* name, const char* camel, const char* go_type,
               std::initializer_list<const char*> names, int& out, std::optional<parse_error>& error) {
  const rapidjson::Value* v = field(object, name, camel);
  if (!v || v->IsNull()) return true;
  if (v->IsInt() && v->GetInt() >= 0 && v->GetInt() < static_cast<int>(names.size())) {
    out = v->GetInt();
    return true;
  }
  if (v->IsString()) {
    int i = 0;
    for (const char* candidate : names) {
      if (std::strcmp(candidate, v->GetString()) == 0) {
        out = i;
        return true;
      }
      ++i;
    }
    error = parse_error{std::string("unknown value \"") + v->GetString() + "\" for enum " + go_type};
    return false;
  }
  if (v->IsBool() || v->IsObject() || v->IsArray()) {
    error = parse_error{go_type_error(*v, go_type)};
    return false;
  }
  // A number that is not one of the enum's (etcd 3.4 takes any int32: proto3 enums are open).
  error = parse_error{std::string("bad input: unknown value for enum field \"") + name + "\""};
  return false;
}

// Checks that `doc` is a JSON object. Members the gateway does not know are ignored, as
// etcd's gateway does (jsonpb AllowUnknownFields).
std::optional<parse_error> check_object(const rapidjson::Value& doc) {
  if (!doc.IsObject()) return parse_error{go_type_error(doc, "map[string]json.RawMessage")};
  return std::nullopt;
}

// One request body: an empty body or null is an empty request; bytes after the first value
// are not read (Go's json.Decoder, as grpc-gateway uses it).
std::optional<parse_error> parse_json(const std::string& body, rapidjson::Document& doc) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    doc.SetObject();
    return std::nullopt;
  }
  // rapidjson skips a UTF-8 byte-order mark; Go's decoder does not.
  if (std::size_t at = body.find_first_not_of(" \t\r\n"); body.compare(at, 3, "\xEF\xBB\xBF") == 0)
    return parse_error{"invalid character " + go_quote_char(0xEF) + " looking for beginning of value"};
  // Iterative: a body of 1.5 MiB of '[' would overflow the stack of the recursive parser.
  doc.Parse<rapidjson::kParseStopWhenDoneFlag | rapidjson::kParseIterativeFlag>(body.c_str(), body.size());
  if (doc.HasParseError()) return parse_error{go_syntax_error(body, doc.GetParseError(), doc.GetErrorOffset())};
  if (doc.IsNull()) doc.SetObject();
  return std::nullopt;
}

std::optional<parse_error> parse_put(const rapidjson::Value& doc, kv::put_request& put) {
  auto error = check_object(doc);
  if (error) return error;
  if (!read_bytes(doc, "key", nullptr, put.key, error) || !read_bytes(doc, "value", nullptr, put.value, error) ||
      !read_int64(doc, "lease", nullptr, put.lease, error) || !read_bool(doc, "prev_kv", "prevKv", put.prev_kv, error) ||
      !read_bool(doc, "ignore_value", "ignoreValue", put.ignore_value, error) ||
      !read_bool(doc, "ignore_lease", "ignoreLease", put.ignore_lease, error))
    return error;
  return std::nullopt;
}

// `serializable_out`: where a top-level range says whether it may skip the ReadIndex
// confirmation (null inside a txn, which is always linearizable).
std::optional<parse_error> parse_range(const rapidjson::Value& doc, kv::range_request& range,
                                       bool* serializable_out = nullptr) {
  auto error = check_object(doc);
  if (error) return error;
  bool serializable = false;
  int order = 0, target = 0;
  if (!read_bytes(doc, "key", nullptr, range.key, error) ||
      !read_bytes(doc, "range_end", "rangeEnd", range.range_end, error) ||
      !read_int64(doc, "limit", nullptr, range.limit, error) ||
      !read_int64(doc, "revision", nullptr, range.revision, error) ||
      !read_enum(doc, "sort_order", "sortOrder", "etcdserverpb.RangeRequest_SortOrder",
                 {"NONE", "ASCEND", "DESCEND"}, order, error) ||
      !read_enum(doc, "sort_target", "sortTarget", "etcdserverpb.RangeRequest_SortTarget",
                 {"KEY", "VERSION", "CREATE", "MOD", "VALUE"}, target, error) ||
      !read_bool(doc, "serializable", nullptr, serializable, error) ||
      !read_bool(doc, "keys_only", "keysOnly", range.keys_only, error) ||
      !read_bool(doc, "count_only", "countOnly", range.count_only, error) ||
      !read_int64(doc, "min_mod_revision", "minModRevision", range.min_mod_revision, error) ||
      !read_int64(doc, "max_mod_revision", "maxModRevision", range.max_mod_revision, error) ||
      !read_int64(doc, "min_create_revision", "minCreateRevision", range.min_create_revision, error) ||
      !read_int64(doc, "max_create_revision", "maxCreateRevision", range.max_create_revision, error))
    return error;
  range.order = static_cast<kv::sort_order>(order);
  range.target = static_cast<kv::sort_target>(target);
  if (serializable_out) *serializable_out = serializable;
  return std::nullopt;
}

struct range_call {
  kv::range_request request;
  bool serializable = false;
};

std::optional<parse_error> parse_delete_range(const rapidjson::Value& doc, kv::delete_range_request& request) {
  auto error = check_object(doc);
  if (error) return error;
  if (!read_bytes(doc, "key", nullptr, request.key, error) ||
      !read_bytes(doc, "range_end", "rangeEnd", request.range_end, error) ||
      !read_bool(doc, "prev_kv", "prevKv", request.prev_kv, error))
    return error;
  return std::nullopt;
}

std::optional<parse_error> parse_compaction(const rapidjson::Value& doc, std::int64_t& revision, bool& physical) {
  auto error = check_object(doc);
  if (error) return error;
  if (!read_int64(doc, "revision", nullptr, revision, error) || !read_bool(doc, "physical", nullptr, physical, error))
    return error;
  return std::nullopt;
}

std::optional<parse_error> parse_compare(const rapidjson::Value& doc, kv::compare& compare) {
  auto error = check_object(doc);
  if (error) return error;
  // etcd's enum numbers: EQUAL 0, GREATER 1, LESS 2, NOT_EQUAL 3; VERSION 0, CREATE 1,
  // MOD 2, VALUE 3, LEASE 4.
  int result = 0, target = 0;
  if (!read_enum(doc, "result", nullptr, "etcdserverpb.Compare_CompareResult",
                 {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"}, result, error) ||
      !read_enum(doc, "target", nullptr, "etcdserverpb.Compare_CompareTarget",
                 {"VERSION", "CREATE", "MOD", "VALUE", "LEASE"}, target, error) ||
      !read_bytes(doc, "key", nullptr, compare.key, error) ||
      !read_bytes(doc, "range_end", "rangeEnd", compare.range_end, error))
    return error;
  static constexpr kv::compare_result results[] = {kv::compare_result::equal, kv::compare_result::greater,
                                                   kv::compare_result::less, kv::compare_result::not_equal};
  static constexpr kv::compare_target targets[] = {kv::compare_target::version, kv::compare_target::create,
                                                   kv::compare_target::mod, kv::compare_target::value,
                                                   kv::compare_target::lease};
  compare.result = results[result];
  compare.target = targets[target];
  // The oneof member that matches the target (another member leaves it 0, as etcd).
  bool ok = true;
  switch (compare.target) {
    case kv::compare_target::version: ok = read_int64(doc, "version", nullptr, compare.number, error); break;
    case kv::compare_target::create:
      ok = read_int64(doc, "create_revision", "createRevision", compare.number, error);
      break;
    case kv::compare_target::mod: ok = read_int64(doc, "mod_revision", "modRevision", compare.number, error); break;
    case kv::compare_target::value: ok = read_bytes(doc, "value", nullptr, compare.value, error); break;
    case kv::compare_target::lease: ok = read_int64(doc, "lease", nullptr, compare.number, error); break;
  }
  if (!ok) return error;
  return std::nullopt;
}

std::optional<parse_error> parse_txn(const rapidjson::Value& doc, kv::txn_request& txn, std::size_t depth);

// `depth`: how many txns enclose the op.
std::optional<parse_error> parse_request_op(const rapidjson::Value& doc, kv::request_op& op, std::size_t depth) {
  auto error = check_object(doc);
  if (error) return error;
  // jsonpb (grpc-gateway 1.9) sets each oneof member present in turn, in declaration
  // order, so with several the last declared wins; with none (or null), etcd's
  // checkRequestOp answers "key not found".
  auto member = [&doc](const char* proto_name, const char* camel_name) -> const rapidjson::Value* {
    const rapidjson::Value* v = field(doc, proto_name, camel_name);
    return v && !v->IsNull() ? v : nullptr;
  };
  if (const auto* nested_doc = member("request_txn", "requestTxn")) {
    // Deeper than the store's op budget allows (mvcc_store::txn): refused as etcd would.
    if (depth >= kv::mvcc_txn_depth_max) return parse_error{std::string(kv::mvcc_messages::too_many_operations)};
    kv::txn_request nested;
    if ((error = parse_txn(*nested_doc, nested, depth + 1))) return error;
    op = kv::request_op::of(std::move(nested));
  } else if (const auto* v = member("request_delete_range", "requestDeleteRange")) {
    kv::delete_range_request request;
    if ((error = parse_delete_range(*v, request))) return error;
    op = kv::request_op::of(std::move(request));
  } else if (const auto* v = member("request_put", "requestPut")) {
    kv::put_request put;
    if ((error = parse_put(*v, put))) return error;
    op = kv::request_op::of(std::move(put));
  } else if (const auto* v = member("request_range", "requestRange")) {
    kv::range_request range;
    if ((error = parse_range(*v, range))) return error;
    op = kv::request_op::of(std::move(range));
  } else {
    return parse_error{"etcdserver: key not found"};
  }
  return std::nullopt;
}

// `depth`: how many txns enclose this one (0 for the request's own).
std::optional<parse_error> parse_txn(const rapidjson::Value& doc, kv::txn_request& txn, std::size_t depth) {
  auto error = check_object(doc);
  if (error) return error;
  if (const auto* v = field(doc, "compare", nullptr); v && !v->IsNull()) {
    if (!v->IsArray()) return parse_error{"bad input: field \"compare\" must be an array"};
    for (const auto& item : v->GetArray()) {
      kv::compare compare;
      if ((error = parse_compare(item, compare))) return error;
      txn.compares.push_back(std::move(compare));
    }
  }
  for (auto [name, ops] : {std::pair{"success", &txn.success}, std::pair{"failure", &txn.failure}}) {
    const auto* v = field(doc, name, nullptr);
    if (!v || v->IsNull()) continue;
    if (!v->IsArray()) return parse_error{std::string("bad input: field \"") + name + "\" must be an array"};
    for (const auto& item : v->GetArray()) {
      kv::request_op op;
      if ((error = parse_request_op(item, op, depth))) return error;
      ops->push_back(std::move(op));
    }
  }
  return std::nullopt;
}

std::optional<parse_error> parse_lease_grant(const rapidjson::Value& doc, std::int64_t& ttl, std::int64_t& id) {
  auto error = check_object(doc);
  if (error) return error;
  if (!read_int64(doc, "TTL", nullptr, ttl, error) || !read_int64(doc, "ID", nullptr, id, error)) return error;
  return std::nullopt;
}

std::optional<parse_error> parse_lease_id(const rapidjson::Value& doc, std::int64_t& id, bool* keys) {
  auto error = check_object(doc);
  if (error) return error;
  if (!read_int64(doc, "ID", nullptr, id, error)) return error;
  if (keys && !read_bool(doc, "keys", nullptr, *keys, error)) return error;
  return std::nullopt;
}

// ---- formatting results ----------------------------------------------------------------------

std::string put_body(const kv::put_result& put) {
  std::string out = "{";
  append_header(out, put.revision);
  append_put_fields(out, put);
  out += "}";
  return out;
}

std::string range_body(const kv::range_result& found) {
  std::string out = "{";
  append_header(out, found.revision);
  append_range_fields(out, found);
  out += "}";
  return out;
}

std::string delete_body(const kv::delete_range_result& deleted) {
  std::string out = "{";
  append_header(out, deleted.revision);
  append_delete_fields(out, deleted);
  out += "}";
  return out;
}

// A response inside a txn carries a header with the revision only (etcd 3.4).
void append_nested_header(std::string& out, std::int64_t revision) {
  out += "{\"header\":{\"revision\":\"" + std::to_string(revision) + "\"}";
}

// `succeeded` and `responses` of a TxnResponse, each response with a header holding only
// its revision; a nested txn's own header is empty (etcd 3.4's newTxnResp).
void append_txn_fields(std::string& out, bool succeeded, const std::vector<kv::response_op>& responses) {
  if (succeeded) out += ",\"succeeded\":true";  // grpc-gateway omits false
  if (responses.empty()) return;
  out += ",\"responses\":[";
  for (std::size_t i = 0; i < responses.size(); ++i) {
    const kv::response_op& op = responses[i];
    if (i) out += ',';
    switch (op.type) {
      case kv::request_op::kind::range:
        out += "{\"response_range\":";
        append_nested_header(out, op.range.revision);
        append_range_fields(out, op.range);
        break;
      case kv::request_op::kind::put:
        out += "{\"response_put\":";
        append_nested_header(out, op.put.revision);
        append_put_fields(out, op.put);
        break;
      case kv::request_op::kind::delete_range:
        out += "{\"response_delete_range\":";
        append_nested_header(out, op.delete_range.revision);
        append_delete_fields(out, op.delete_range);
        break;
      case kv::request_op::kind::txn:
        out += "{\"response_txn\":{\"header\":{}";
        append_txn_fields(out, op.txn.succeeded, op.txn.responses);
        break;
    }
    out += "}}";
  }
  out += ']';
}

std::string txn_body(const kv::txn_result& done) {
  std::string out = "{";
  append_header(out, done.revision);
  append_txn_fields(out, done.succeeded, done.responses);
  out += "}";
  return out;
}

std::string header_only_body(std::int64_t revision) {
  std::string out = "{";
  append_header(out, revision);
  out += "}";
  return out;
}

// LeaseGrantResponse / KeepAlive / TimeToLive: ID, TTL, grantedTTL, keys (zero omitted).
std::string lease_body(const lease_status& lease, bool granted_ttl, bool keys) {
  std::string out = "{";
  append_header(out, lease.revision);
  if (lease.id != 0) out += ",\"ID\":\"" + std::to_string(lease.id) + "\"";
  if (lease.ttl != 0) out += ",\"TTL\":\"" + std::to_string(lease.ttl) + "\"";
  if (granted_ttl && lease.granted_ttl != 0) out += ",\"grantedTTL\":\"" + std::to_string(lease.granted_ttl) + "\"";
  if (keys && !lease.keys.empty()) {
    out += ",\"keys\":[";
    for (std::size_t i = 0; i < lease.keys.size(); ++i) {
      if (i) out += ',';
      out += '"' + base64_encode(lease.keys[i]) + '"';
    }
    out += ']';
  }
  out += "}";
  return out;
}

// ---- HTTP handlers ---------------------------------------------------------------------------------

void send_reply(http_response& response, const reply& r) { response.send(r.http_status, "application/json", r.body); }

// Parses the body with `parse` into a Request (a bad body is answered 400 with gRPC code 3),
// runs `execute` (which returns task<reply>) and sends the reply.
template <typename Request, typename Parse, typename Execute>
task<void> serve_json(const http_request& request, http_response& response, Parse parse, Execute execute) {
  Request parsed{};
  rapidjson::Document doc;
  auto error = parse_json(request.body, doc);
  if (!error) error = parse(doc, parsed);
  if (error) {
    send_reply(response, error_reply(3, error->message));
    co_return;
  }
  task<reply> work = execute(std::move(parsed));
  reply r = co_await std::move(work);
  send_reply(response, r);
}

// Awaits `operation` (a task<result<T>>) and formats its value with `format`.
template <typename T, typename Format>
task<reply> answer(task<result<T>> operation, Format format) {
  result<T> done = co_await std::move(operation);
  if (!done) co_return failure_reply(done.error());
  co_return reply{200, format(done.value())};
}

task<void> http_put(const http_request& request, http_response& response) {
  return serve_json<kv::put_request>(
      request, response, [](const rapidjson::Value& doc, kv::put_request& put) { return parse_put(doc, put); },
      [](kv::put_request put) { return answer(kv_module::put(std::move(put)), put_body); });
}

task<void> http_range(const http_request& request, http_response& response) {
  return serve_json<range_call>(
      request, response,
      [](const rapidjson::Value& doc, range_call& r) { return parse_range(doc, r.request, &r.serializable); },
      [](range_call r) { return answer(kv_module::range(std::move(r.request), r.serializable), range_body); });
}

task<void> http_delete_range(const http_request& request, http_response& response) {
  return serve_json<kv::delete_range_request>(
      request, response,
      [](const rapidjson::Value& doc, kv::delete_range_request& d) { return parse_delete_range(doc, d); },
      [](kv::delete_range_request d) { return answer(kv_module::delete_range(std::move(d)), delete_body); });
}

task<void> http_txn(const http_request& request, http_response& response) {
  return serve_json<kv::txn_request>(
      request, response, [](const rapidjson::Value& doc, kv::txn_request& t) { return parse_txn(doc, t, 0); },
      [](kv::txn_request t) { return answer(kv_module::txn(std::move(t)), txn_body); });
}

struct compaction_request {
  std::int64_t revision = 0;
  bool physical = false;
};

task<void> http_compaction(const http_request& request, http_response& response) {
  return serve_json<compaction_request>(
      request, response,
      [](const rapidjson::Value& doc, compaction_request& c) { return parse_compaction(doc, c.revision, c.physical); },
      [](compaction_request c) { return answer(kv_module::compact(c.revision, c.physical), header_only_body); });
}

struct lease_request {
  std::int64_t ttl = 0;
  std::int64_t id = 0;
  bool keys = false;
};

task<void> http_lease_grant(const http_request& request, http_response& response) {
  return serve_json<lease_request>(
      request, response,
      [](const rapidjson::Value& doc, lease_request& l) { return parse_lease_grant(doc, l.ttl, l.id); },
      [](lease_request l) {
        return answer(kv_module::lease_grant(l.ttl, l.id),
                      [](const lease_status& s) { return lease_body(s, false, false); });
      });
}

task<void> http_lease_revoke(const http_request& request, http_response& response) {
  return serve_json<lease_request>(
      request, response,
      [](const rapidjson::Value& doc, lease_request& l) {
        return parse_lease_id(doc, l.id, nullptr);
      },
      [](lease_request l) { return answer(kv_module::lease_revoke(l.id), header_only_body); });
}

// etcd 3.4 answers an unknown lease with TTL -1, not an error.
task<reply> time_to_live(lease_request l) {
  task<result<lease_status>> asking = kv_module::lease_time_to_live(l.id, l.keys);
  result<lease_status> found = co_await std::move(asking);
  if (!found && kv_error_of(found.error()) == kv_error::lease_not_found) {
    lease_status missing;
    missing.id = l.id;
    missing.ttl = -1;
    missing.revision = published_revision();
    co_return reply{200, lease_body(missing, true, false)};
  }
  if (!found) co_return failure_reply(found.error());
  co_return reply{200, lease_body(found.value(), true, l.keys)};
}

task<void> http_lease_time_to_live(const http_request& request, http_response& response) {
  return serve_json<lease_request>(
      request, response,
      [](const rapidjson::Value& doc, lease_request& l) {
        return parse_lease_id(doc, l.id, &l.keys);
      },
      time_to_live);
}

task<void> http_lease_leases(const http_request& request, http_response& response) {
  return serve_json<lease_request>(
      request, response,
      [](const rapidjson::Value& doc, lease_request&) {
        return check_object(doc);
      },
      [](lease_request) {
        return answer(kv_module::lease_list(), [](const std::vector<std::int64_t>& leases) {
          std::string out = "{";
          append_header(out, published_revision());
          if (!leases.empty()) {
            out += ",\"leases\":[";
            for (std::size_t i = 0; i < leases.size(); ++i) {
              if (i) out += ',';
              out += "{\"ID\":\"" + std::to_string(leases[i]) + "\"}";
            }
            out += ']';
          }
          out += "}";
          return out;
        });
      });
}

// The request body is a stream of LeaseKeepAliveRequest objects; each is answered with one
// {"result":...} line, and the stream ends with the body (grpc-gateway's bidi streaming).
// etcd answers an unknown lease with TTL 0 (omitted), not an error.
// /v3/watch: the body holds WatchRequest objects; each create_request opens a watcher on
// this shard; every WatchResponse is one {"result":...} line of a chunked stream that
// lasts until the client goes away.
// Parses a body that holds zero or more JSON objects one after another (a request
// stream, as grpc-gateway reads it). Each object is handed to `each`; an error stops.
// etcd's gateway answers a request stream it cannot decode with HTTP 500, gRPC code 2
// (stream_error_code): the decoder's error is not a gRPC status.
constexpr int stream_error_code = 2;

template <typename Each>
std::optional<parse_error> for_each_json_object(const std::string& body, Each each) {
  rapidjson::StringStream in(body.c_str());
  for (;;) {
    while (in.Peek() == ' ' || in.Peek() == '\n' || in.Peek() == '\r' || in.Peek() == '\t') in.Take();
    if (in.Tell() >= body.size()) return std::nullopt;
    rapidjson::Document doc;
    doc.ParseStream<rapidjson::kParseStopWhenDoneFlag>(in);
    // The error offset is the stream's, so from the start of the body.
    if (doc.HasParseError()) return parse_error{go_syntax_error(body, doc.GetParseError(), doc.GetErrorOffset())};
    if (doc.IsNull()) doc.SetObject();  // jsonpb: null is an empty message
    if (auto error = each(doc)) return error;
  }
}

// grpc-gateway 1.9's error of a stream (handleForwardResponseStreamError): one chunk
// {"error":{"grpc_code":..,"http_code":..,"message":..,"http_status":..}}, checked
// against etcd 3.4.23 (a learner's /v3/watch).
std::string stream_error_chunk(int grpc_code, std::string_view message) {
  static constexpr std::pair<int, const char*> statuses[] = {
      {400, "Bad Request"}, {404, "Not Found"}, {412, "Precondition Failed"}, {429, "Too Many Requests"},
      {500, "Internal Server Error"}, {503, "Service Unavailable"}};
  int http = http_status_of(grpc_code);
  const char* text = "Internal Server Error";
  for (const auto& [code, name] : statuses)
    if (code == http) text = name;
  std::string chunk = "{\"error\":{\"grpc_code\":" + std::to_string(grpc_code) + ",\"http_code\":" +
                      std::to_string(http) + ",\"message\":";
  keel::append_json_string(chunk, message);
  chunk += ",\"http_status\":\"";
  chunk += text;
  chunk += "\"}}\n";
  return chunk;
}

// A stream refused before its first message: the status of its gRPC code, one error chunk.
void refuse_stream(http_response& response, int grpc_code, std::string_view message) {
  response.start_stream(http_status_of(grpc_code), "application/json");
  response.write_chunk(stream_error_chunk(grpc_code, message));
  response.end_stream();
}

void write_result_line(http_response& response, const std::string& message) {
  std::string line;
  line.reserve(message.size() + 12);
  line += "{\"result\":";
  line += message;
  line += "}\n";
  response.write_chunk(line);
}

task<void> http_lease_keep_alive(const http_request& request, http_response& response) {
  std::vector<std::int64_t> ids;
  auto error = for_each_json_object(request.body, [&ids](const rapidjson::Value& doc) -> std::optional<parse_error> {
    std::int64_t id = 0;
    if (auto bad = parse_lease_id(doc, id, nullptr)) return bad;
    ids.push_back(id);
    return std::nullopt;
  });
  if (error) {
    send_reply(response, error_reply(stream_error_code, error->message));
    co_return;
  }
  task<bool> asking = kv_module::self_is_learner();
  if (co_await std::move(asking)) {
    refuse_stream(response, 14, kv_messages::not_supported_for_learner);
    co_return;
  }
  // grpc-gateway sends its headers with the first message: a stream that fails before
  // any answer gets the failure's HTTP status, a later failure only the error chunk.
  bool started = false;
  for (std::int64_t id : ids) {
    task<result<lease_status>> renewing = kv_module::lease_keep_alive(id);
    result<lease_status> renewed = co_await std::move(renewing);
    lease_status s;
    if (renewed) {
      s = std::move(renewed.value());
    } else if (kv_error_of(renewed.error()) == kv_error::lease_not_found) {
      s.id = id;  // TTL 0: gone
      s.revision = published_revision();
    } else if (!started) {
      refuse_stream(response, grpc_code_of(renewed.error()), renewed.error().message());
      co_return;
    } else {
      response.write_chunk(stream_error_chunk(grpc_code_of(renewed.error()), renewed.error().message()));
      break;
    }
    if (!std::exchange(started, true)) response.start_stream(200, "application/json");
    write_result_line(response, lease_body(s, false, false));
  }
  if (!started) response.start_stream(200, "application/json");
  response.end_stream();
}

// ---- watch --------------------------------------------------------------------------------------

struct watch_create {
  watch_request request;
  std::int64_t watch_id = 0;
  bool progress_notify = false;
  bool duplicate_id = false;  // the watch_id asked for is taken: answered, not created
};

std::optional<parse_error> parse_watch_create(const rapidjson::Value& doc, watch_create& create) {
  auto error = check_object(doc);
  if (error) return error;
  bool fragment = false;
  watch_request& w = create.request;
  if (!read_bytes(doc, "key", nullptr, w.key, error) || !read_bytes(doc, "range_end", "rangeEnd", w.range_end, error) ||
      !read_int64(doc, "start_revision", "startRevision", w.start_revision, error) ||
      !read_bool(doc, "progress_notify", "progressNotify", create.progress_notify, error) ||
      !read_bool(doc, "prev_kv", "prevKv", w.prev_kv, error) ||
      !read_int64(doc, "watch_id", "watchId", create.watch_id, error) || !read_bool(doc, "fragment", nullptr, fragment, error))
    return error;
  if (const auto* filters = field(doc, "filters", nullptr); filters && !filters->IsNull()) {
    if (!filters->IsArray()) return parse_error{"bad input: field \"filters\" must be an array"};
    for (const auto& f : filters->GetArray()) {
      bool no_put = (f.IsString() && std::strcmp(f.GetString(), "NOPUT") == 0) || (f.IsInt() && f.GetInt() == 0);
      bool no_delete = (f.IsString() && std::strcmp(f.GetString(), "NODELETE") == 0) || (f.IsInt() && f.GetInt() == 1);
      if (!no_put && !no_delete) {
        if (f.IsString())
          return parse_error{std::string("unknown value \"") + f.GetString() +
                             "\" for enum etcdserverpb.WatchCreateRequest_FilterType"};
        return parse_error{"bad input: unknown value for enum field \"filters\""};
      }
      w.no_put |= no_put;
      w.no_delete |= no_delete;
    }
  }
  return std::nullopt;
}

// WatchResponse fields after the header: watch_id, created, canceled, compact_revision,
// cancel_reason, events (zero values omitted).
std::string watch_message(std::int64_t revision, std::int64_t watch_id) {
  std::string out = "{";
  append_header(out, revision);
  if (watch_id != 0) out += ",\"watch_id\":\"" + std::to_string(watch_id) + "\"";
  return out;
}

void append_event(std::string& out, const kv::event& e, bool prev_kv) {
  out += '{';
  if (e.type == kv::event_type::remove) out += "\"type\":\"DELETE\",";
  out += "\"kv\":";
  append_key_value(out, e.kv);
  if (prev_kv && e.prev_kv) {
    out += ",\"prev_kv\":";
    append_key_value(out, *e.prev_kv);
  }
  out += '}';
}

// etcd's progress-notify interval (v3rpc/watch.go).
constexpr auto progress_interval = std::chrono::minutes(10);
// How often a quiet stream checks whether its client went away.
constexpr auto liveness_interval = std::chrono::milliseconds(1000);

// Streams one watcher's events (its "created" line is already out) until the client goes.
task<void> serve_watcher(http_response& response, std::unique_ptr<watcher> w, watch_create create) {
  auto last_sent = std::chrono::steady_clock::now();
  for (;;) {
    if (!co_await response.drained()) break;
    task<std::optional<watch_update>> waiting = w->next(liveness_interval);
    std::optional<watch_update> update = co_await std::move(waiting);
    if (response.peer_closed()) break;
    auto now = std::chrono::steady_clock::now();
    if (!update) {
      if (create.progress_notify && now - last_sent >= progress_interval) {
        write_result_line(response, watch_message(published_revision(), create.watch_id) + "}");
        last_sent = now;
      }
      continue;
    }
    if (update->canceled && update->compact_revision > 0) {
      // etcd's response to a watcher behind the compaction: no header revision, no
      // cancel_reason. compact_revision is keel's first watchable revision (the compact
      // revision + 1), where etcd names the compact revision itself.
      write_result_line(response, watch_message(0, create.watch_id) + ",\"canceled\":true,\"compact_revision\":\"" +
                                      std::to_string(update->compact_revision) + "\"}");
      break;
    }
    std::string message = watch_message(update->revision, create.watch_id);
    if (update->canceled) {
      message += ",\"canceled\":true";
      if (!update->cancel_reason.empty()) {
        message += ",\"cancel_reason\":";
        append_json_string(message, update->cancel_reason);
      }
      message += "}";
      write_result_line(response, message);
      break;
    }
    message += ",\"events\":[";
    for (std::size_t i = 0; i < update->events.size(); ++i) {
      if (i) message += ',';
      append_event(message, *update->events[i], create.request.prev_kv);
    }
    message += "]}";
    write_result_line(response, message);
    last_sent = now;
  }
}

// One WatchRequest of the body, in order: etcd's watch server answers each as it comes.
struct watch_step {
  enum class kind { create, cancel, progress };
  kind what = kind::create;
  watch_create create;         // kind::create
  std::int64_t cancel_id = 0;  // kind::cancel: a watch created earlier in the body
  bool canceled_later = false;  // kind::create: a later cancel_request ends it first
};

// A stream with nothing to deliver stays open, as etcd's, until its client goes.
task<void> wait_for_client_to_go(http_response& response) {
  keel::timer tick;
  while (!response.peer_closed() && !shard::current()->stopping()) {
    task<bool> sleeping = tick.sleep(liveness_interval);
    if (!co_await std::move(sleeping)) break;
  }
}

task<void> http_watch(const http_request& request, http_response& response) {
  std::vector<watch_step> steps;
  // Watch ids as etcd's watchStream.Watch: 0 asks for the next unused id counting from
  // 0; an id in use is refused; a canceled watch's id is free again.
  std::map<std::int64_t, std::size_t> live;  // watch id -> its create step
  std::int64_t next_id = 0;
  auto error = for_each_json_object(request.body, [&](const rapidjson::Value& doc) -> std::optional<parse_error> {
    if (auto bad = check_object(doc)) return bad;
    watch_step step;
    if (const auto* c = field(doc, "create_request", "createRequest")) {
      if (auto bad = parse_watch_create(*c, step.create)) return bad;
      watch_create& create = step.create;
      if (create.watch_id == 0) {
        while (live.contains(next_id)) ++next_id;
        create.watch_id = next_id++;
      } else if (live.contains(create.watch_id)) {
        create.duplicate_id = true;
      }
      if (!create.duplicate_id) live[create.watch_id] = steps.size();
    } else if (const auto* cancel = field(doc, "cancel_request", "cancelRequest")) {
      if (auto bad = check_object(*cancel)) return bad;
      std::optional<parse_error> bad;
      if (!read_int64(*cancel, "watch_id", "watchId", step.cancel_id, bad)) return bad;
      auto created = live.find(step.cancel_id);
      if (created == live.end()) return std::nullopt;  // etcd: no such watch, no answer
      steps[created->second].canceled_later = true;
      live.erase(created);
      step.what = watch_step::kind::cancel;
    } else if (field(doc, "progress_request", "progressRequest")) {
      step.what = watch_step::kind::progress;
    } else {
      return std::nullopt;  // an empty WatchRequest: nothing to do
    }
    steps.push_back(std::move(step));
    return std::nullopt;
  });
  if (error) {
    send_reply(response, error_reply(stream_error_code, error->message));
    co_return;
  }
  task<bool> asking = kv_module::self_is_learner();
  if (co_await std::move(asking)) {
    refuse_stream(response, 14, kv_messages::not_supported_for_learner);
    co_return;
  }
  // Every answer to the body's requests goes out in order, and the engine's watchers are
  // registered as their "created" lines go, with nothing awaited in between.
  response.start_stream(200, "application/json");
  std::vector<task<void>> watchers;
  for (watch_step& step : steps) {
    switch (step.what) {
      case watch_step::kind::progress:  // etcd 3.4: one line for the stream, watch id -1
        write_result_line(response, watch_message(published_revision(), -1) + "}");
        break;
      case watch_step::kind::cancel:
        write_result_line(response, watch_message(published_revision(), step.cancel_id) + ",\"canceled\":true}");
        break;
      case watch_step::kind::create: {
        watch_create& create = step.create;
        if (create.duplicate_id) {  // etcd: watch id -1, created and canceled at once
          write_result_line(response, watch_message(published_revision(), -1) +
                                          ",\"created\":true,\"canceled\":true,\"cancel_reason\":"
                                          "\"mvcc: duplicate watch ID provided on the WatchStream\"}");
          break;
        }
        write_result_line(response, watch_message(published_revision(), create.watch_id) + ",\"created\":true}");
        // A watch on the empty key (etcd creates one: no key is ever empty, so it never
        // fires) and one the body cancels right after need no engine watcher.
        bool inert = create.request.key.empty() && create.request.range_end.empty();
        if (inert || step.canceled_later) break;
        std::unique_ptr<watcher> w = watcher::create(create.request);
        watchers.push_back(serve_watcher(response, std::move(w), std::move(create)));
        break;
      }
    }
  }
  if (!watchers.empty()) {
    task<void> all = when_all(std::move(watchers));
    co_await std::move(all);
  } else {
    task<void> waiting = wait_for_client_to_go(response);
    co_await std::move(waiting);
  }
  response.end_stream();
}

// ---- maintenance ----------------------------------------------------------------------------------

task<void> http_status(const http_request& request, http_response& response) {
  return serve_json<lease_request>(
      request, response,
      [](const rapidjson::Value& doc, lease_request&) { return check_object(doc); },
      [](lease_request) -> task<reply> {
        task<result<member_status>> asking = kv_module::status_now();
        result<member_status> now = co_await std::move(asking);
        if (!now) co_return failure_reply(now.error());
        const member_status& s = now.value();
        std::string out = "{";
        append_header(out, s.revision);
        out += ",\"version\":\"3.4.23\"";
        if (s.db_size) out += ",\"dbSize\":\"" + std::to_string(s.db_size) + "\"";
        out += ",\"leader\":\"" + std::to_string(s.leader) + "\"";
        out += ",\"raftIndex\":\"" + std::to_string(s.raft_index) + "\"";
        out += ",\"raftTerm\":\"" + std::to_string(s.raft_term) + "\"";
        out += ",\"raftAppliedIndex\":\"" + std::to_string(s.raft_applied_index) + "\"";
        if (s.db_size_in_use) out += ",\"dbSizeInUse\":\"" + std::to_string(s.db_size_in_use) + "\"";
        if (s.learner) out += ",\"isLearner\":true";
        out += "}";
        co_return reply{200, out};
      });
}

// ---- cluster ---------------------------------------------------------------------------------------

void append_string_list(std::string& out, const std::vector<std::string>& items) {
  out += "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ",";
    append_json_string(out, items[i]);
  }
  out += "]";
}

// etcd's etcdserverpb.Member as the gateway prints it (empty fields omitted).
void append_member(std::string& out, const cluster_member_info& m) {
  out += "{\"ID\":\"" + std::to_string(m.id) + "\"";
  if (!m.name.empty()) {
    out += ",\"name\":";
    append_json_string(out, m.name);
  }
  out += ",\"peerURLs\":";
  append_string_list(out, m.peer_urls);
  if (!m.client_urls.empty()) {
    out += ",\"clientURLs\":";
    append_string_list(out, m.client_urls);
  }
  if (m.learner) out += ",\"isLearner\":true";
  out += "}";
}

void append_members(std::string& out, const std::vector<cluster_member_info>& members) {
  out += ",\"members\":[";
  for (std::size_t i = 0; i < members.size(); ++i) {
    if (i) out += ",";
    append_member(out, members[i]);
  }
  out += "]";
}

// A member id field: a uint64 as a JSON number or its decimal text (jsonpb's form).
std::optional<parse_error> read_member_id(const rapidjson::Value& doc, const char* name, const char* camel,
                                          std::uint64_t& out) {
  const rapidjson::Value* v = field(doc, name, camel);
  if (!v || v->IsNull()) return std::nullopt;
  if (v->IsUint64()) {
    out = v->GetUint64();
    return std::nullopt;
  }
  std::string text = v->IsString() ? v->GetString() : "";
  char* end = nullptr;
  errno = 0;
  unsigned long long id = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0)
    return parse_error{std::string("json: cannot unmarshal into Go value of type uint64 (") + name + ")"};
  out = id;
  return std::nullopt;
}

// etcd's peerURLs field (a list of strings; anything else in it is skipped).
void read_peer_urls(const rapidjson::Value& doc, std::vector<std::string>& out) {
  const rapidjson::Value* urls = field(doc, "peerURLs", "peer_urls");
  if (urls && urls->IsArray())
    for (const auto& u : urls->GetArray())
      if (u.IsString()) out.emplace_back(u.GetString());
}

struct member_add_request {
  std::vector<std::string> peer_urls;
  bool learner = false;
};

struct member_id_request {
  std::uint64_t id = 0;
};

task<void> http_member_add(const http_request& request, http_response& response) {
  return serve_json<member_add_request>(
      request, response,
      [](const rapidjson::Value& doc, member_add_request& r) -> std::optional<parse_error> {
        auto error = check_object(doc);
        if (error) return error;
        read_peer_urls(doc, r.peer_urls);
        if (!read_bool(doc, "isLearner", "is_learner", r.learner, error)) return error;
        return std::nullopt;
      },
      [](member_add_request r) -> task<reply> {
        task<result<member_change>> adding = kv_module::member_add(std::move(r.peer_urls), r.learner);
        auto added = co_await std::move(adding);
        if (!added) co_return failure_reply(added.error());
        std::string out = "{";
        append_header(out, published_revision());
        out += ",\"member\":";
        append_member(out, added->member);
        append_members(out, added->members);
        out += "}";
        co_return reply{200, out};
      });
}

template <bool Remove>
task<void> http_member_change(const http_request& request, http_response& response) {
  return serve_json<member_id_request>(
      request, response,
      [](const rapidjson::Value& doc, member_id_request& r) -> std::optional<parse_error> {
        auto error = check_object(doc);
        if (error) return error;
        return read_member_id(doc, "ID", "id", r.id);
      },
      [](member_id_request r) -> task<reply> {
        task<result<member_change>> changing = Remove ? kv_module::member_remove(r.id) : kv_module::member_promote(r.id);
        auto changed = co_await std::move(changing);
        if (!changed) co_return failure_reply(changed.error());
        std::string out = "{";
        append_header(out, published_revision());
        append_members(out, changed->members);
        out += "}";
        co_return reply{200, out};
      });
}

struct member_update_request {
  std::uint64_t id = 0;
  std::vector<std::string> peer_urls;
};

task<void> http_member_update(const http_request& request, http_response& response) {
  return serve_json<member_update_request>(
      request, response,
      [](const rapidjson::Value& doc, member_update_request& r) -> std::optional<parse_error> {
        auto error = check_object(doc);
        if (error) return error;
        if (auto bad = read_member_id(doc, "ID", "id", r.id)) return bad;
        read_peer_urls(doc, r.peer_urls);
        return std::nullopt;
      },
      [](member_update_request r) -> task<reply> {
        task<result<member_change>> updating = kv_module::member_update(r.id, std::move(r.peer_urls));
        auto updated = co_await std::move(updating);
        if (!updated) co_return failure_reply(updated.error());
        std::string out = "{";
        append_header(out, published_revision());
        append_members(out, updated->members);
        out += "}";
        co_return reply{200, out};
      });
}

task<void> http_member_list(const http_request& request, http_response& response) {
  return serve_json<lease_request>(
      request, response,
      [](const rapidjson::Value& doc, lease_request&) { return check_object(doc); },
      [](lease_request) -> task<reply> {
        task<member_view> asking = kv_module::members_now();
        member_view view = co_await std::move(asking);
        std::string out = "{";
        append_header(out, published_revision());
        append_members(out, view.members);
        out += "}";
        co_return reply{200, out};
      });
}

struct move_leader_request {
  std::int64_t target = 0;
};

task<void> http_move_leader(const http_request& request, http_response& response) {
  return serve_json<move_leader_request>(
      request, response,
      [](const rapidjson::Value& doc, move_leader_request& r) -> std::optional<parse_error> {
        auto error = check_object(doc);
        if (error) return error;
        std::uint64_t id = 0;
        if (auto bad = read_member_id(doc, "targetID", "target_id", id)) return bad;
        r.target = static_cast<std::int64_t>(id);
        return std::nullopt;
      },
      [](move_leader_request r) -> task<reply> {
        task<status> moving = kv_module::move_leader(static_cast<std::uint64_t>(r.target));
        status moved = co_await std::move(moving);
        if (!moved) co_return failure_reply(moved);
        std::string out = "{";
        append_header(out, published_revision());
        out += "}";
        co_return reply{200, out};
      });
}

}  // namespace

void register_v3_routes(http_router& router) {
  for (const char* prefix : {"/v3", "/v3beta"}) {
    std::string p(prefix);
    router.add_async("POST", p + "/kv/put", http_put);
    router.add_async("POST", p + "/cluster/member/list", http_member_list);
    router.add_async("POST", p + "/cluster/member/add", http_member_add);
    router.add_async("POST", p + "/cluster/member/remove", http_member_change<true>);
    router.add_async("POST", p + "/cluster/member/promote", http_member_change<false>);
    router.add_async("POST", p + "/cluster/member/update", http_member_update);
    router.add_async("POST", p + "/maintenance/transfer-leadership", http_move_leader);
    router.add_async("POST", p + "/kv/range", http_range);
    router.add_async("POST", p + "/kv/deleterange", http_delete_range);
    router.add_async("POST", p + "/kv/txn", http_txn);
    router.add_async("POST", p + "/kv/compaction", http_compaction);
    router.add_async("POST", p + "/watch", http_watch);
    router.add_async("POST", p + "/lease/grant", http_lease_grant);
    router.add_async("POST", p + "/lease/revoke", http_lease_revoke);
    router.add_async("POST", p + "/kv/lease/revoke", http_lease_revoke);
    router.add_async("POST", p + "/lease/keepalive", http_lease_keep_alive);
    router.add_async("POST", p + "/lease/timetolive", http_lease_time_to_live);
    router.add_async("POST", p + "/kv/lease/timetolive", http_lease_time_to_live);
    router.add_async("POST", p + "/lease/leases", http_lease_leases);
    router.add_async("POST", p + "/kv/lease/leases", http_lease_leases);
    router.add_async("POST", p + "/maintenance/status", http_status);
  }
}

}  // namespace keel::kv_module
