#include "src/checkpoint/index.h"

#include <charconv>
#include <cstdio>

#include "src/util/error.h"

namespace kl::checkpoint {
namespace {

constexpr std::string_view kIndexMagic = "kilolayer index ";
constexpr size_t kMaxStringBytes = size_t{64} << 20;
constexpr size_t kMaxDims = 8;

// The string fields of the header, in the order they are written.
std::vector<std::pair<const char*, std::string Header::*>> string_fields() {
  return {{"config", &Header::config},           {"layout", &Header::layout},
          {"data", &Header::data},               {"spike_window", &Header::spike_window},
          {"skipped_batches", &Header::skipped_batches}};
}

// A cursor over the text that throws on anything unexpected.
class Reader {
 public:
  Reader(std::string_view text, const std::string& where) : text_(text), where_(where) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw UserError(where_ + ": its index is malformed: " + what);
  }
  bool at_end() const { return pos_ == text_.size(); }

  // The next space- or newline-ended word (not empty), consuming the separator.
  std::string_view word() {
    const size_t end = text_.find_first_of(" \n", pos_);
    if (end == std::string_view::npos || end == pos_) fail("a field is missing near byte " + std::to_string(pos_));
    std::string_view w = text_.substr(pos_, end - pos_);
    pos_ = end + 1;
    last_separator_ = text_[end];
    return w;
  }
  void expect_line_end() {
    if (last_separator_ != '\n') fail("a line has too many fields near byte " + std::to_string(pos_));
  }
  template <class T>
  T number(std::string_view w, int base = 10) {
    T value{};
    const auto [end, error] = std::from_chars(w.data(), w.data() + w.size(), value, base);
    if (error != std::errc() || end != w.data() + w.size()) fail("'" + std::string(w.substr(0, 40)) + "' is not a number");
    return value;
  }
  std::string_view bytes(size_t n) {
    if (n >= text_.size() - pos_ || text_[pos_ + n] != '\n') {
      fail("a string runs past the index");
    }
    std::string_view b = text_.substr(pos_, n);
    pos_ += n + 1;
    return b;
  }

 private:
  std::string_view text_;
  const std::string& where_;
  size_t pos_ = 0;
  char last_separator_ = 0;
};

bool plain_name(std::string_view name) {
  if (name.empty() || name.size() > 4096 || name.front() == '/') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == '/' || c == '-';
    if (!ok) return false;
  }
  return name.find("..") == std::string_view::npos;
}

}  // namespace

int64_t index_length(std::string_view first_line) {
  if (first_line.size() < size_t(kIndexLineBytes) || first_line.substr(0, kIndexMagic.size()) != kIndexMagic ||
      first_line[kIndexLineBytes - 1] != '\n') {
    return -1;
  }
  int64_t length = -1;
  const char* digits = first_line.data() + kIndexMagic.size();
  const auto [end, error] = std::from_chars(digits, first_line.data() + kIndexLineBytes - 1, length);
  if (error != std::errc() || end != first_line.data() + kIndexLineBytes - 1 || length < kIndexLineBytes) return -1;
  return length;
}

std::string format_index(const Index& index) {
  std::string body;
  char line[160];
  const Header& h = index.header;
  for (auto [name, value] : {std::pair{"format_version", h.format_version}, std::pair{"step", h.step},
                             std::pair{"tokens_seen", h.tokens_seen}}) {
    std::snprintf(line, sizeof line, "int %s %lld\n", name, static_cast<long long>(value));
    body += line;
  }
  for (const auto& [name, field] : string_fields()) {
    body += std::string("string ") + name + " " + std::to_string((h.*field).size()) + "\n" + h.*field + "\n";
  }
  for (const auto& [name, t] : index.tensors) {
    std::string shape;
    for (int64_t d : t.shape) {
      if (!shape.empty()) shape += ',';
      shape += std::to_string(d);
    }
    std::snprintf(line, sizeof line, " %020lld %lld %08x ", static_cast<long long>(t.offset),
                  static_cast<long long>(t.bytes), t.crc);
    body += "tensor " + name + line + shape + "\n";
  }
  body += "end\n";
  std::snprintf(line, sizeof line, "%.*s%012lld\n", static_cast<int>(kIndexMagic.size()), kIndexMagic.data(),
                static_cast<long long>(body.size() + kIndexLineBytes));
  return line + body;
}

Index parse_index(std::string_view text, int64_t data_begin, int64_t file_size, const std::string& where) {
  Reader in(text, where);
  if (index_length(text) != static_cast<int64_t>(text.size())) in.fail("its first line does not give its length");
  in.word();
  in.word();
  in.word();
  Index index;
  Header& h = index.header;
  for (auto [name, value] : {std::pair{"format_version", &h.format_version}, std::pair{"step", &h.step},
                             std::pair{"tokens_seen", &h.tokens_seen}}) {
    if (in.word() != "int" || in.word() != name) in.fail(std::string("'int ") + name + "' expected");
    *value = in.number<int64_t>(in.word());
    in.expect_line_end();
  }
  if (h.format_version != kFormatVersion) {
    throw UserError(where + ": format version " + std::to_string(h.format_version) + ", this kilolayer reads " +
                    std::to_string(kFormatVersion));
  }
  if (h.step < 0 || h.tokens_seen < 0) in.fail("a negative step or token count");
  for (const auto& [name, field] : string_fields()) {
    if (in.word() != "string" || in.word() != name) in.fail(std::string("'string ") + name + "' expected");
    const auto length = in.number<uint64_t>(in.word());
    in.expect_line_end();
    if (length > kMaxStringBytes) in.fail(std::string(name) + " claims " + std::to_string(length) + " bytes");
    h.*field = std::string(in.bytes(static_cast<size_t>(length)));
  }
  while (true) {
    const std::string_view kind = in.word();
    if (kind == "end") {
      in.expect_line_end();
      break;
    }
    if (kind != "tensor") in.fail("'tensor' or 'end' expected, found '" + std::string(kind.substr(0, 40)) + "'");
    const std::string name(in.word());
    if (!plain_name(name)) in.fail("a tensor name is not a plain path");
    TensorEntry t;
    t.offset = in.number<int64_t>(in.word());
    t.bytes = in.number<int64_t>(in.word());
    t.crc = in.number<uint32_t>(in.word(), 16);
    const std::string_view dims = in.word();
    in.expect_line_end();
    int64_t elements = 1;
    for (size_t start = 0; start <= dims.size();) {
      const size_t comma = std::min(dims.find(',', start), dims.size());
      const auto d = in.number<int64_t>(dims.substr(start, comma - start));
      if (d < 1 || d > (int64_t{1} << 40) || elements > (int64_t{1} << 40) / d || t.shape.size() == kMaxDims) {
        in.fail(name + ": a bad shape");
      }
      elements *= d;
      t.shape.push_back(d);
      start = comma + 1;
    }
    if (t.bytes != elements * 4 || t.offset < data_begin || t.offset > file_size || t.bytes > file_size - t.offset) {
      in.fail(name + ": " + std::to_string(t.bytes) + " bytes at " + std::to_string(t.offset) +
              " do not fit its shape or the file (" + std::to_string(file_size) + " bytes)");
    }
    if (!index.tensors.emplace(name, std::move(t)).second) in.fail(name + " is listed twice");
  }
  if (!in.at_end()) in.fail("bytes after its end");
  return index;
}

}  // namespace kl::checkpoint
