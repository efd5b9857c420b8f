// cmd/keelctl/table.h — etcdctl's tables (olekukonko/tablewriter as etcdctl 3.4 sets it up):
// a rule of '-' and '+', headers centred, cells right-aligned, one space of padding.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace keel::ctl {

// Renders rows like etcdctl's tablewriter: headers centred, cells right-aligned.
inline std::string render_table(const std::vector<std::string>& headers,
                                const std::vector<std::vector<std::string>>& rows) {
  // Width in characters, not bytes: "µs" is two bytes but one column.
  auto columns = [](const std::string& s) {
    std::size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  };
  std::vector<std::size_t> widths;
  for (const auto& h : headers) widths.push_back(columns(h));
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], columns(row[c]));
  }
  std::string rule = "+";
  for (std::size_t w : widths) rule += std::string(w + 2, '-') + "+";
  rule += "\n";

  std::string out = rule + "|";
  for (std::size_t c = 0; c < headers.size(); ++c) {
    std::size_t gap = widths[c] - columns(headers[c]);
    out += " " + std::string(gap / 2, ' ') + headers[c] + std::string(gap - gap / 2, ' ') + " |";
  }
  out += "\n" + rule;
  for (const auto& row : rows) {
    out += "|";
    for (std::size_t c = 0; c < row.size(); ++c) {
      out += " " + std::string(widths[c] - columns(row[c]), ' ') + row[c] + " |";
    }
    out += "\n";
  }
  return out + rule;
}

}  // namespace keel::ctl
