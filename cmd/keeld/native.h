// native.h — the native protocol on the client port: FlatBuffers frames, pipelined by
// request id (docs/formats/frame.md).
//
// A connection whose first byte is the frame magic's is served here instead of by the
// HTTP server. Every frame is verified (length, CRC-32C, FlatBuffers verifier) by
// wire::frame_decoder before anything reads it. Each verified request is dispatched by
// its type: health to the core, everything else to the module that registered that
// message type on the bus, on this shard. Requests run concurrently and answers carry
// the request id, so a client may pipeline freely and match answers by id. Stream
// handlers answer with several frames, the last flagged end-of-stream.
//
// A frame that fails verification gets one error frame (type error, request id 0)
// naming what was wrong and where, and the connection is closed: after a corrupt frame
// the byte stream cannot be trusted.
#pragma once

#include "keel/reactor/bus.h"
#include "keel/reactor/net.h"

namespace keel::keeld {

struct native_options {
  keel::bus* bus = nullptr;
  unsigned shard_count = 1;
};

task<void> serve_native(connection* conn, recv_buffer first, const native_options& options);

}  // namespace keel::keeld
