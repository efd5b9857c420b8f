// file_source.cc — keel.json: read-only file access and a line-tracking parse.
#include "file_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

namespace keel::config::detail {
namespace {

// A rapidjson input stream over a byte range that counts lines as the Reader takes
// characters. Not copy-optimized (rapidjson's StreamTraits default), so the handler
// sees the Reader's current position through the same object.
class line_stream {
 public:
  using Ch = char;
  explicit line_stream(std::string_view text) : _begin(text.data()), _current(text.data()),
                                                _end(text.data() + text.size()) {}
  Ch Peek() const { return _current == _end ? '\0' : *_current; }
  Ch Take() {
    if (_current == _end) return '\0';
    const Ch c = *_current++;
    if (c == '\n') ++_line;
    return c;
  }
  std::size_t Tell() const { return static_cast<std::size_t>(_current - _begin); }
  int line() const { return _line; }
  // Output side: unused by a non-in-situ parse.
  Ch* PutBegin() { KEEL_PANIC("line_stream is read-only"); }
  void Put(Ch) { KEEL_PANIC("line_stream is read-only"); }
  void Flush() { KEEL_PANIC("line_stream is read-only"); }
  std::size_t PutEnd(Ch*) { KEEL_PANIC("line_stream is read-only"); }

 private:
  const Ch* _begin;
  const Ch* _current;
  const Ch* _end;
  int _line = 1;
};

// Forwards every SAX event to the Document's own handler while tracking the JSON Pointer
// of the value being built. Returning false stops the Reader; _failure says why.
class tracking_handler {
 public:
  tracking_handler(json_document& document, const line_stream& stream, parsed_file& out)
      : _document(document), _stream(stream), _out(out) {}

  bool Null() { value_begins(); return _document.Null(); }
  bool Bool(bool b) { value_begins(); return _document.Bool(b); }
  bool Int(int i) { value_begins(); return _document.Int(i); }
  bool Uint(unsigned u) { value_begins(); return _document.Uint(u); }
  bool Int64(std::int64_t i) { value_begins(); return _document.Int64(i); }
  bool Uint64(std::uint64_t u) { value_begins(); return _document.Uint64(u); }
  bool Double(double d) { value_begins(); return _document.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    value_begins();
    return _document.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    value_begins();
    return _document.String(s, n, copy);
  }
  bool StartObject() { return open(true) && _document.StartObject(); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) {
    frame& top = _frames.back();
    top.key.assign(s, n);
    if (!top.keys.insert(top.key).second) {
      _failure = status(errc::invalid_argument,
                        _out.name + ":" + std::to_string(_stream.line()) + ": " +
                            display_pointer(top.pointer) + ": duplicate key \"" + top.key + "\"");
      return false;
    }
    return _document.Key(s, n, copy);
  }
  bool EndObject(rapidjson::SizeType members) { _frames.pop_back(); return _document.EndObject(members); }
  bool StartArray() { return open(false) && _document.StartArray(); }
  bool EndArray(rapidjson::SizeType items) { _frames.pop_back(); return _document.EndArray(items); }

  const status& failure() const { return _failure; }

 private:
  struct frame {
    bool is_object;
    std::string pointer;
    std::string key;              // objects: the key whose value comes next
    std::size_t index = 0;        // arrays: the index of the next item
    std::set<std::string> keys;   // objects: keys seen, to reject duplicates
  };

  // Records the line of the value that starts now and returns its pointer.
  std::string value_begins() {
    std::string pointer;
    if (!_frames.empty()) {
      frame& top = _frames.back();
      pointer = top.pointer + "/" +
                (top.is_object ? escape_pointer_token(top.key) : std::to_string(top.index++));
    }
    _out.lines[pointer] = _stream.line();
    return pointer;
  }

  bool open(bool is_object) {
    std::string pointer = value_begins();
    if (_frames.size() >= config_nesting_depth_max) {
      _failure = status(errc::too_large, _out.name + ":" + std::to_string(_stream.line()) +
                                             ": nesting deeper than " +
                                             std::to_string(config_nesting_depth_max));
      return false;
    }
    _frames.push_back(frame{is_object, std::move(pointer), {}, 0, {}});
    return true;
  }

  json_document& _document;
  const line_stream& _stream;
  parsed_file& _out;
  std::vector<frame> _frames;
  status _failure;
};

// 1-based line and byte column of `offset` in `text`.
std::string position(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  int line = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return std::to_string(line) + ":" + std::to_string(offset - line_start + 1);
}

}  // namespace

status read_config_file(const std::string& path, std::string& text) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int error = errno;
    return status(error == ENOENT ? errc::not_found : errc::io_error,
                  "config file " + path + ": " + std::strerror(error));
  }
  struct ::stat info {};
  status outcome;
  if (::fstat(fd, &info) != 0) {
    outcome = status(errc::io_error, "config file " + path + ": fstat: " + std::strerror(errno));
  } else if (!S_ISREG(info.st_mode)) {
    outcome = status(errc::invalid_argument, "config file " + path + ": not a regular file");
  } else if (static_cast<std::size_t>(info.st_size) > config_file_bytes_max) {
    outcome = status(errc::too_large, "config file " + path + ": " + std::to_string(info.st_size) +
                                          " bytes, more than the limit of " +
                                          std::to_string(config_file_bytes_max));
  } else {
    text.clear();
    char buffer[16 * 1024];
    for (;;) {
      const ssize_t got = ::read(fd, buffer, sizeof buffer);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        outcome = status(errc::io_error, "config file " + path + ": read: " + std::strerror(errno));
        break;
      }
      if (got == 0) break;
      text.append(buffer, static_cast<std::size_t>(got));
      if (text.size() > config_file_bytes_max) {  // the file grew since fstat
        outcome = status(errc::too_large, "config file " + path + ": more than " +
                                              std::to_string(config_file_bytes_max) + " bytes");
        break;
      }
    }
  }
  ::close(fd);
  return outcome;
}

status parse_config_text(std::string_view text, std::string_view name, parsed_file& out) {
  out.name = std::string(name);
  out.lines.clear();
  out.document.SetObject();
  if (text.size() > config_file_bytes_max)
    return status(errc::too_large, out.name + ": more than " +
                                       std::to_string(config_file_bytes_max) + " bytes");
  // rapidjson stops at a NUL as at the end of input; a NUL in the middle would silently
  // hide the rest of the file.
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos)
    return status(errc::invalid_argument, out.name + ":" + position(text, nul) + ": NUL byte");

  constexpr unsigned flags = rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;
  line_stream stream(text);
  json_document parsed;
  status handler_failure;
  rapidjson::ParseResult outcome;
  auto generator = [&](json_document& target) {
    tracking_handler handler(target, stream, out);
    rapidjson::Reader reader;
    outcome = reader.Parse<flags>(stream, handler);
    handler_failure = handler.failure();
    return !outcome.IsError();
  };
  parsed.Populate(generator);
  if (!handler_failure.is_ok()) return handler_failure;
  if (outcome.IsError()) {
    return status(errc::invalid_argument, out.name + ":" + position(text, outcome.Offset()) +
                                              ": " + rapidjson::GetParseError_En(outcome.Code()));
  }
  if (!parsed.IsObject()) {
    const int line = out.lines.count("") ? out.lines[""] : 1;
    return status(errc::invalid_argument, out.name + ":" + std::to_string(line) +
                                              ": top level must be an object, got " +
                                              json_type_name(parsed));
  }
  out.document.Swap(parsed);
  return status::ok();
}

}  // namespace keel::config::detail
