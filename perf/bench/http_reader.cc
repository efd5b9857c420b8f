// http_reader.cc — see http_reader.h.
#include "http_reader.h"

#include <cstring>

namespace keel::bench {

http_reader::http_reader() {
  http_parser_init(&_parser, HTTP_RESPONSE);
  _parser.data = this;
  std::memset(&_settings, 0, sizeof _settings);
  _settings.on_message_begin = on_message_begin;
  _settings.on_headers_complete = on_headers_complete;
  _settings.on_body = on_body;
  _settings.on_message_complete = on_message_complete;
}

bool http_reader::feed(const char* data, std::size_t size) {
  if (!_error.empty()) return false;
  std::size_t parsed = http_parser_execute(&_parser, &_settings, data, size);
  if (HTTP_PARSER_ERRNO(&_parser) != HPE_OK || parsed != size) {
    _error = std::string("bad HTTP response: ") + http_errno_description(HTTP_PARSER_ERRNO(&_parser));
    return false;
  }
  return true;
}

std::optional<std::string> http_reader::take_line() {
  std::size_t newline = _current.body.find('\n');
  if (!in_progress() || newline == std::string::npos) return std::nullopt;
  std::string line = _current.body.substr(0, newline);
  _current.body.erase(0, newline + 1);
  return line;
}

int http_reader::on_message_begin(http_parser* parser) {
  auto* self = static_cast<http_reader*>(parser->data);
  self->_current = {};
  self->_in_message = true;
  self->_headers_done = false;
  return 0;
}

int http_reader::on_headers_complete(http_parser* parser) {
  auto* self = static_cast<http_reader*>(parser->data);
  self->_current.status = static_cast<int>(parser->status_code);
  self->_headers_done = true;
  return 0;
}

int http_reader::on_body(http_parser* parser, const char* at, std::size_t length) {
  static_cast<http_reader*>(parser->data)->_current.body.append(at, length);
  return 0;
}

int http_reader::on_message_complete(http_parser* parser) {
  auto* self = static_cast<http_reader*>(parser->data);
  self->_done.push_back(std::move(self->_current));
  self->_current = {};
  self->_in_message = false;
  self->_headers_done = false;
  return 0;
}

}  // namespace keel::bench
