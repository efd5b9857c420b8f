// types.cc — names, the conf_change entry encoding and describe() (types.h, message.h).
#include "keel/raft/types.h"

#include <algorithm>
#include <cstring>

#include "keel/raft/message.h"
#include "keel/raft/raft.h"

namespace keel::raft {

const char* role_name(role r) noexcept {
  switch (r) {
    case role::follower: return "follower";
    case role::pre_candidate: return "pre-candidate";
    case role::candidate: return "candidate";
    case role::leader: return "leader";
  }
  return "unknown";
}

const char* conf_change_type_name(conf_change_type type) noexcept {
  switch (type) {
    case conf_change_type::add_voter: return "add-voter";
    case conf_change_type::add_learner: return "add-learner";
    case conf_change_type::remove_node: return "remove-node";
  }
  return "unknown";
}

const char* message_type_name(message_type type) noexcept {
  switch (type) {
    case message_type::append: return "append";
    case message_type::append_response: return "append-response";
    case message_type::vote: return "vote";
    case message_type::vote_response: return "vote-response";
    case message_type::pre_vote: return "pre-vote";
    case message_type::pre_vote_response: return "pre-vote-response";
    case message_type::heartbeat: return "heartbeat";
    case message_type::heartbeat_response: return "heartbeat-response";
    case message_type::snapshot: return "snapshot";
    case message_type::timeout_now: return "timeout-now";
    case message_type::read_index: return "read-index";
    case message_type::read_index_response: return "read-index-response";
  }
  return "unknown";
}

const char* progress_state_name(progress_state state) noexcept {
  switch (state) {
    case progress_state::probe: return "probe";
    case progress_state::replicate: return "replicate";
    case progress_state::snapshot: return "snapshot";
  }
  return "unknown";
}

bool conf_state::is_voter(node_id id) const {
  return std::binary_search(voters.begin(), voters.end(), id);
}

bool conf_state::is_learner(node_id id) const {
  return std::binary_search(learners.begin(), learners.end(), id);
}

namespace {
constexpr std::size_t conf_change_header_bytes = 9;  // u8 type + u64 node
}

std::string encode_conf_change(const conf_change& change) {
  std::string out(conf_change_header_bytes, '\0');
  out[0] = static_cast<char>(change.type);
  for (int i = 0; i < 8; ++i) out[1 + i] = static_cast<char>((change.node >> (8 * i)) & 0xff);
  out += change.context;
  return out;
}

result<conf_change> decode_conf_change(std::string_view bytes) {
  if (bytes.size() < conf_change_header_bytes)
    return status{errc::corruption, "raft: conf change entry too short"};
  auto type = static_cast<std::uint8_t>(bytes[0]);
  if (type > static_cast<std::uint8_t>(conf_change_type::remove_node))
    return status{errc::corruption, "raft: unknown conf change type"};
  conf_change change;
  change.type = static_cast<conf_change_type>(type);
  for (int i = 0; i < 8; ++i)
    change.node |= std::uint64_t{static_cast<std::uint8_t>(bytes[1 + i])} << (8 * i);
  change.context = std::string(bytes.substr(conf_change_header_bytes));
  return change;
}

std::string describe(const message& m) {
  std::string out = message_type_name(m.type);
  out += " " + std::to_string(m.from) + "->" + std::to_string(m.to);
  out += " term " + std::to_string(m.term);
  out += " index " + std::to_string(m.index) + " log_term " + std::to_string(m.log_term);
  if (!m.entries.empty()) out += " entries " + std::to_string(m.entries.size());
  out += " commit " + std::to_string(m.commit);
  if (m.reject) out += " reject hint " + std::to_string(m.reject_hint);
  if (!m.snapshot.empty()) out += " snapshot " + std::to_string(m.snapshot.metadata.index);
  if (!m.context.empty()) out += " context " + m.context;
  return out;
}

}  // namespace keel::raft
