// echo — an example keel module, built out of tree against the installed headers.
//
// It shows the three ways a module meets the rest of keeld:
//   - an HTTP route:  GET /echo/<text>       → "<prefix><text>\n"
//   - a bus handler:  keel.wire.EchoRequest  → keel.wire.EchoResponse (type 20 → 21),
//                     which also answers native frames of type 20 on the client port;
//   - the bus across shards: GET /echo-bus/<text> asks the echo handler on the next
//                     shard over the bus and returns its answer as JSON.
// Config section "echo": {"prefix": "..."}; metrics keel_echo_requests_total{shard}.
#include <flatbuffers/flatbuffers.h>
#include <rapidjson/document.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "keel/module.h"
#include "keel/reactor/bus.h"
#include "keel/reactor/http.h"
#include "keel/reactor/shard.h"
#include "keel/wire/echo_generated.h"

namespace {

constexpr std::uint16_t echo_request_type = 20;   // wire::frame_type::echo_request
constexpr std::uint16_t echo_response_type = 21;  // wire::frame_type::echo_response

struct echo_state {
  std::string prefix;
  std::unique_ptr<std::atomic<std::uint64_t>[]> handled;  // per shard
  unsigned shards = 1;
};
echo_state* g_state = nullptr;

keel::buffer finished(std::unique_ptr<flatbuffers::FlatBufferBuilder> builder) {
  auto* owner = builder.release();
  return keel::buffer(owner, [](void* p) { delete static_cast<flatbuffers::FlatBufferBuilder*>(p); },
                      owner->GetBufferPointer(), owner->GetSize());
}

keel::buffer make_request(std::string_view text) {
  auto builder = std::make_unique<flatbuffers::FlatBufferBuilder>(64 + text.size());
  auto offset = builder->CreateString(text.data(), text.size());
  builder->Finish(keel::wire::CreateEchoRequest(*builder, offset, 1));
  return finished(std::move(builder));
}

// The bus handler: runs on whichever shard the request was addressed to.
keel::task<keel::result<keel::message>> handle_echo(keel::message request) {
  flatbuffers::Verifier verifier(request.payload.data(), request.payload.size());
  if (!verifier.VerifyBuffer<keel::wire::EchoRequest>(nullptr))
    co_return keel::status{keel::errc::corruption, "echo: request is not a valid EchoRequest"};
  auto* parsed = flatbuffers::GetRoot<keel::wire::EchoRequest>(request.payload.data());
  std::string text = g_state->prefix + (parsed->text() ? parsed->text()->str() : "");
  unsigned here = keel::shard::current()->id();
  g_state->handled[here].fetch_add(1, std::memory_order_relaxed);
  auto builder = std::make_unique<flatbuffers::FlatBufferBuilder>(64 + text.size());
  auto offset = builder->CreateString(text);
  builder->Finish(keel::wire::CreateEchoResponse(*builder, offset));
  keel::message answer;
  answer.type = echo_response_type;
  answer.payload = finished(std::move(builder));
  co_return answer;
}

void handle_http_echo(const keel::http_request& request, keel::http_response& response) {
  std::string_view text = request.path().substr(sizeof("/echo/") - 1);
  g_state->handled[keel::shard::current()->id()].fetch_add(1, std::memory_order_relaxed);
  response.send(200, "text/plain", g_state->prefix + std::string(text) + "\n");
}

keel::task<void> handle_http_echo_bus(keel::bus& bus, const keel::http_request& request,
                                      keel::http_response& response) {
  std::string_view text = request.path().substr(sizeof("/echo-bus/") - 1);
  keel::shard* here = keel::shard::current();
  unsigned target = (here->id() + 1) % here->count();
  // Await a named task: GCC 12 mishandles resource-owning temporaries in co_await.
  keel::task<keel::result<keel::message>> pending = bus.request("echo", echo_request_type, make_request(text), target);
  auto answer = co_await std::move(pending);
  if (!answer) {
    response.send_error(502, answer.error().message());
    co_return;
  }
  auto* parsed = flatbuffers::GetRoot<keel::wire::EchoResponse>(answer.value().payload.data());
  std::string body = "{\"text\":";
  keel::append_json_string(body, parsed->text() ? parsed->text()->str() : "");
  body += ",\"from_shard\":" + std::to_string(here->id()) + ",\"to_shard\":" + std::to_string(target) + "}\n";
  response.send(200, "application/json", body);
}

int start(keel::module_context* context, char* error, std::size_t error_bytes) {
  rapidjson::Document config;
  std::string text(context->config_json());
  config.Parse(text.c_str());
  if (config.HasParseError() || !config.IsObject() || !config.HasMember("prefix") || !config["prefix"].IsString()) {
    std::snprintf(error, error_bytes, "config section is not {\"prefix\": string}: %s", text.c_str());
    return 1;
  }
  g_state = new echo_state;
  g_state->prefix = config["prefix"].GetString();
  g_state->shards = context->shard_count();
  g_state->handled.reset(new std::atomic<std::uint64_t>[g_state->shards]);
  for (unsigned i = 0; i < g_state->shards; ++i) g_state->handled[i] = 0;

  keel::bus& bus = context->bus();
  bus.handle("echo", echo_request_type, handle_echo);
  context->router().add_prefix("GET", "/echo/", handle_http_echo);
  context->router().add_prefix_async("GET", "/echo-bus/", [&bus](const keel::http_request& q, keel::http_response& r) {
    return handle_http_echo_bus(bus, q, r);
  });
  context->add_metrics([](std::string& out) {
    out += "# HELP keel_echo_requests_total Echo requests answered.\n# TYPE keel_echo_requests_total counter\n";
    for (unsigned i = 0; i < g_state->shards; ++i)
      out += "keel_echo_requests_total{shard=\"" + std::to_string(i) + "\"} " +
             std::to_string(g_state->handled[i].load(std::memory_order_relaxed)) + "\n";
  });
  context->log(keel::log_level::info, "started with prefix \"" + g_state->prefix + "\"");
  return 0;
}

void stop(keel::module_context*) {
  delete g_state;
  g_state = nullptr;
}

constexpr const char* schema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "prefix": {"type": "string", "default": "echo: ", "description": "Text put before every echoed answer."}
  }
})";

const keel_module_descriptor descriptor = {
    KEEL_MODULE_ABI_VERSION, "echo", "1.0.0", schema, nullptr, start, stop,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const keel_module_descriptor* keel_module_entry(void) {
  return &descriptor;
}
