// keel_raft_wire: keel::raft::message <-> keel.wire.RaftMessage. See keel/raft/wire.h.
#include "keel/raft/wire.h"

#include <flatbuffers/flatbuffers.h>

#include "keel/wire/raft_generated.h"

namespace keel::raft {

namespace {

namespace fw = keel::wire;

flatbuffers::Offset<flatbuffers::Vector<std::uint8_t>> bytes_of(flatbuffers::FlatBufferBuilder& b,
                                                                const std::string& s) {
  return b.CreateVector(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

std::string string_of(const flatbuffers::Vector<std::uint8_t>* v) {
  return v ? std::string(reinterpret_cast<const char*>(v->data()), v->size()) : std::string();
}

std::vector<node_id> ids_of(const flatbuffers::Vector<std::uint64_t>* v) {
  return v ? std::vector<node_id>(v->begin(), v->end()) : std::vector<node_id>();
}

status refuse(const std::string& what) { return {errc::invalid_argument, "raft message refused: " + what}; }

// The checks of wire.h that do not depend on the encoding.
status check_message(const message& m, std::uint64_t self) {
  if (m.from == no_node) return refuse("from node 0");
  if (m.to != self) return refuse("addressed to " + std::to_string(m.to) + ", this node is " + std::to_string(self));
  if (m.from == m.to) return refuse("from and to are both " + std::to_string(m.from));
  if (m.log_term > m.term) return refuse("log_term " + std::to_string(m.log_term) + " above term " +
                                         std::to_string(m.term) + " (" + describe(m) + ")");
  std::uint64_t expected = m.index + 1;
  for (const entry& e : m.entries) {
    if (e.index != expected)
      return refuse("entries not consecutive: index " + std::to_string(e.index) + " where " +
                    std::to_string(expected) + " was expected (" + describe(m) + ")");
    if (e.term > m.term)
      return refuse("an entry of term " + std::to_string(e.term) + " in a message of term " + std::to_string(m.term) +
                    " (" + describe(m) + ")");
    ++expected;
  }
  if (!m.entries.empty() && m.type != message_type::append) return refuse("entries on a " + describe(m));
  bool has_snapshot = !m.snapshot.empty();
  if (has_snapshot != (m.type == message_type::snapshot))
    return refuse(has_snapshot ? "a snapshot on a " + describe(m) : "a snapshot message without a snapshot");
  return status::ok();
}

}  // namespace

std::string encode_raft_message(const message& m, std::uint64_t cluster_id) {
  flatbuffers::FlatBufferBuilder b(256 + m.context.size() + m.snapshot.data.size());
  std::vector<flatbuffers::Offset<fw::RaftEntry>> entries;
  entries.reserve(m.entries.size());
  for (const entry& e : m.entries) {
    entries.push_back(fw::CreateRaftEntry(b, e.term, e.index, static_cast<fw::RaftEntryType>(e.type), bytes_of(b, e.data)));
  }
  auto entry_vector = b.CreateVector(entries);
  flatbuffers::Offset<fw::RaftSnapshot> snapshot;
  if (!m.snapshot.empty()) {
    const snapshot_metadata& meta = m.snapshot.metadata;
    snapshot = fw::CreateRaftSnapshot(b, meta.index, meta.term, b.CreateVector(meta.conf.voters),
                                      b.CreateVector(meta.conf.learners), bytes_of(b, m.snapshot.data));
  }
  auto context = bytes_of(b, m.context);
  fw::RaftMessageBuilder out(b);
  out.add_cluster_id(cluster_id);
  out.add_type(static_cast<fw::RaftMessageType>(m.type));
  out.add_from(m.from);
  out.add_to(m.to);
  out.add_term(m.term);
  out.add_log_term(m.log_term);
  out.add_index(m.index);
  out.add_entries(entry_vector);
  out.add_commit(m.commit);
  out.add_reject(m.reject);
  out.add_reject_hint(m.reject_hint);
  if (!m.snapshot.empty()) out.add_snapshot(snapshot);
  out.add_context(context);
  b.Finish(out.Finish());
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

result<message> decode_raft_message(const std::uint8_t* data, std::size_t size, std::uint64_t expected_cluster_id,
                                    node_id self) {
  flatbuffers::Verifier verifier(data, size);
  if (!verifier.VerifyBuffer<fw::RaftMessage>(nullptr))
    return status{errc::corruption, "raft message refused: " + std::to_string(size) + " bytes that do not verify as keel.wire.RaftMessage"};
  const fw::RaftMessage* in = flatbuffers::GetRoot<fw::RaftMessage>(data);
  if (in->cluster_id() != expected_cluster_id)
    return refuse("from cluster " + std::to_string(in->cluster_id()) + ", this is cluster " +
                  std::to_string(expected_cluster_id));
  auto type = static_cast<unsigned>(in->type());
  if (type >= static_cast<unsigned>(message_type_count)) return refuse("unknown message type " + std::to_string(type));
  message m;
  m.type = static_cast<message_type>(type);
  m.from = in->from();
  m.to = in->to();
  m.term = in->term();
  m.log_term = in->log_term();
  m.index = in->index();
  m.commit = in->commit();
  m.reject = in->reject();
  m.reject_hint = in->reject_hint();
  m.context = string_of(in->context());
  if (const auto* entries = in->entries()) {
    m.entries.reserve(entries->size());
    for (const fw::RaftEntry* e : *entries) {
      auto entry_type_number = static_cast<unsigned>(e->type());
      if (entry_type_number > static_cast<unsigned>(entry_type::conf_change))
        return refuse("unknown entry type " + std::to_string(entry_type_number));
      m.entries.push_back(entry{e->term(), e->index(), static_cast<entry_type>(entry_type_number), string_of(e->data())});
    }
  }
  if (const fw::RaftSnapshot* s = in->snapshot()) {
    m.snapshot.metadata.index = s->index();
    m.snapshot.metadata.term = s->term();
    m.snapshot.metadata.conf.voters = ids_of(s->voters());
    m.snapshot.metadata.conf.learners = ids_of(s->learners());
    m.snapshot.data = string_of(s->data());
    if (m.snapshot.empty()) return refuse("a snapshot at index 0");
  }
  if (status bad = check_message(m, self); !bad) return bad;
  return m;
}

std::optional<std::uint64_t> peek_raft_cluster_id(const std::uint8_t* data, std::size_t size, node_id self) {
  flatbuffers::Verifier verifier(data, size);
  if (!verifier.VerifyBuffer<fw::RaftMessage>(nullptr)) return std::nullopt;
  const fw::RaftMessage* in = flatbuffers::GetRoot<fw::RaftMessage>(data);
  if (in->to() != self) return std::nullopt;
  return in->cluster_id();
}

node_id peek_raft_sender(const std::uint8_t* data, std::size_t size) {
  flatbuffers::Verifier verifier(data, size);
  if (!verifier.VerifyBuffer<fw::RaftMessage>(nullptr)) return no_node;
  return flatbuffers::GetRoot<fw::RaftMessage>(data)->from();
}

std::string encode_snapshot_chunk(const snapshot_chunk& c, std::uint64_t cluster_id) {
  flatbuffers::FlatBufferBuilder b(128 + c.data.size() + c.members.size());
  auto data = bytes_of(b, c.data);
  auto members = b.CreateString(c.members);
  b.Finish(fw::CreateRaftSnapshotChunk(b, cluster_id, c.from, c.index, c.term, c.offset, c.total, data, members));
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

result<snapshot_chunk> decode_snapshot_chunk(const std::uint8_t* data, std::size_t size,
                                             std::uint64_t expected_cluster_id) {
  flatbuffers::Verifier verifier(data, size);
  if (!verifier.VerifyBuffer<fw::RaftSnapshotChunk>(nullptr))
    return status{errc::corruption, "snapshot chunk refused: " + std::to_string(size) +
                                        " bytes that do not verify as keel.wire.RaftSnapshotChunk"};
  const fw::RaftSnapshotChunk* in = flatbuffers::GetRoot<fw::RaftSnapshotChunk>(data);
  if (in->cluster_id() != expected_cluster_id)
    return refuse("snapshot chunk from cluster " + std::to_string(in->cluster_id()) + ", this is cluster " +
                  std::to_string(expected_cluster_id));
  snapshot_chunk c;
  c.from = in->from();
  c.index = in->index();
  c.term = in->term();
  c.offset = in->offset();
  c.total = in->total();
  c.data = string_of(in->data());
  c.members = in->members() ? in->members()->str() : std::string();
  if (c.from == no_node) return refuse("snapshot chunk from node 0");
  if (c.index == 0) return refuse("snapshot chunk of a snapshot at index 0");
  if (c.data.size() > snapshot_chunk_bytes_max) return refuse("snapshot chunk of " + std::to_string(c.data.size()) + " bytes");
  if (c.offset > c.total || c.total - c.offset < c.data.size())
    return refuse("snapshot chunk at " + std::to_string(c.offset) + "+" + std::to_string(c.data.size()) +
                  " beyond the file's " + std::to_string(c.total) + " bytes");
  return c;
}

std::string encode_proposal(const proposal& p, std::uint64_t cluster_id) {
  flatbuffers::FlatBufferBuilder b(64 + p.data.size());
  auto data = bytes_of(b, p.data);
  b.Finish(fw::CreateRaftProposal(b, cluster_id, p.from, data));
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

std::string encode_proposal_result(const proposal_result& r, std::uint64_t cluster_id) {
  flatbuffers::FlatBufferBuilder b(96 + r.message.size() + r.answer.size());
  auto text = b.CreateString(r.message);
  auto answer = r.answer.empty() ? 0 : b.CreateVector(reinterpret_cast<const std::uint8_t*>(r.answer.data()), r.answer.size());
  b.Finish(fw::CreateRaftProposalResult(b, cluster_id, r.code, text, r.index, r.term, r.ttl, answer));
  return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
}

result<proposal> decode_proposal(const std::uint8_t* data, std::size_t size, std::uint64_t expected_cluster_id) {
  flatbuffers::Verifier verifier(data, size);
  if (!verifier.VerifyBuffer<fw::RaftProposal>(nullptr))
    return status{errc::corruption, "raft proposal refused: " + std::to_string(size) + " bytes that do not verify as keel.wire.RaftProposal"};
  const fw::RaftProposal* in = flatbuffers::GetRoot<fw::RaftProposal>(data);
  if (in->cluster_id() != expected_cluster_id)
    return refuse("proposal from cluster " + std::to_string(in->cluster_id()) + ", this is cluster " +
                  std::to_string(expected_cluster_id));
  if (in->from() == no_node) return refuse("proposal from node 0");
  return proposal{in->from(), string_of(in->data())};
}

result<proposal_result> decode_proposal_result(const std::uint8_t* data, std::size_t size,
                                               std::uint64_t expected_cluster_id) {
  flatbuffers::Verifier verifier(data, size);
  if (!verifier.VerifyBuffer<fw::RaftProposalResult>(nullptr))
    return status{errc::corruption, "raft proposal result refused: " + std::to_string(size) +
                                        " bytes that do not verify as keel.wire.RaftProposalResult"};
  const fw::RaftProposalResult* in = flatbuffers::GetRoot<fw::RaftProposalResult>(data);
  if (in->cluster_id() != expected_cluster_id)
    return refuse("proposal result from cluster " + std::to_string(in->cluster_id()) + ", this is cluster " +
                  std::to_string(expected_cluster_id));
  proposal_result r;
  r.code = in->code();
  r.message = in->message() ? in->message()->str() : std::string();
  r.index = in->index();
  r.term = in->term();
  r.ttl = in->ttl();
  r.answer = string_of(in->answer());
  return r;
}

}  // namespace keel::raft
