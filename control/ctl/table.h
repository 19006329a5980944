#pragma once

// Aligned plain-text tables for remoractl: a header row and columns padded to their widest cell.

#include <string>
#include <vector>

namespace remora::ctl {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void addRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  size_t rowCount() const { return rows_.size() - 1; }
  // Columns separated by two spaces; the last column is not padded.
  std::string render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace remora::ctl
