#include "mcore/training/config_file.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mcore/base/error.h"

namespace mcore::training {

namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// Drops a trailing "# comment" that is not inside quotes.
std::string strip_comment(const std::string& s) {
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
      return s.substr(0, i);
    }
  }
  return s;
}

std::string unquote(const std::string& s, const std::string& where) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'')) {
    MCORE_CHECK(s.back() == s.front()) << where << ": unterminated string " << s;
    return s.substr(1, s.size() - 2);
  }
  return s;
}

bool is_null_word(const std::string& s) {
  return s == "null" || s == "~" || s == "Null" || s == "NULL";
}

// "[a, 'b c', 3]" -> items.
std::vector<std::string> parse_flow_list(const std::string& s, const std::string& where) {
  MCORE_CHECK(s.back() == ']') << where << ": unterminated list " << s;
  std::vector<std::string> out;
  std::string cur;
  char quote = 0;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    const char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
      cur += c;
    } else if (c == '"' || c == '\'') {
      quote = c;
      cur += c;
    } else if (c == ',') {
      out.push_back(unquote(trim(cur), where));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!trim(cur).empty() || !out.empty()) out.push_back(unquote(trim(cur), where));
  return out;
}

std::string json_scalar(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();
}

std::vector<ConfigEntry> parse_json(const std::string& text, const std::string& name) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    MCORE_FAIL() << "config file " << name << " is not valid JSON: " << e.what();
  }
  MCORE_CHECK(j.is_object()) << "config file " << name
                             << " must hold a JSON object of flag names to values";
  std::vector<ConfigEntry> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    ConfigEntry e;
    e.key = it.key();
    e.where = name + " key '" + it.key() + "'";
    const auto& v = it.value();
    if (v.is_null()) {
      e.is_null = true;
    } else if (v.is_array()) {
      e.is_list = true;
      for (const auto& item : v) {
        MCORE_CHECK(!item.is_object() && !item.is_array())
            << e.where << ": list items must be plain values";
        e.values.push_back(json_scalar(item));
      }
    } else {
      MCORE_CHECK(!v.is_object()) << e.where << ": nested objects are not flag values";
      e.values.push_back(json_scalar(v));
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<ConfigEntry> parse_yaml(const std::string& text, const std::string& name) {
  std::vector<ConfigEntry> out;
  std::istringstream in(text);
  std::string raw;
  int line_no = 0;
  long open_list = -1;  // index of a "key:" waiting for "- item" lines
  while (std::getline(in, raw)) {
    ++line_no;
    const std::string where = name + ":" + std::to_string(line_no);
    const std::string line = trim(strip_comment(raw));
    if (line.empty() || line == "---") continue;
    if (line[0] == '-' && (line.size() == 1 || line[1] == ' ')) {
      MCORE_CHECK(open_list >= 0) << where << ": list item '" << line << "' without a key above it";
      out[open_list].is_list = true;
      out[open_list].values.push_back(unquote(trim(line.substr(1)), where));
      continue;
    }
    MCORE_CHECK(raw.find_first_not_of(" \t") == 0)
        << where << ": nested mappings are not supported; write flat 'flag-name: value' lines";
    const size_t colon = line.find(':');
    MCORE_CHECK(colon != std::string::npos && colon > 0)
        << where << ": expected 'flag-name: value', got '" << line << "'";
    ConfigEntry e;
    e.key = trim(line.substr(0, colon));
    e.where = where;
    const std::string value = trim(line.substr(colon + 1));
    open_list = -1;
    if (value.empty()) {
      e.is_null = true;  // stays null unless "- item" lines follow
      out.push_back(std::move(e));
      open_list = static_cast<long>(out.size()) - 1;
      continue;
    }
    if (is_null_word(value)) {
      e.is_null = true;
    } else if (value.front() == '[') {
      e.is_list = true;
      e.values = parse_flow_list(value, where);
    } else {
      e.values.push_back(unquote(value, where));
    }
    out.push_back(std::move(e));
  }
  for (auto& e : out)
    if (e.is_list) e.is_null = false;
  return out;
}

}  // namespace

std::vector<ConfigEntry> parse_config_text(const std::string& text, const std::string& name) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') return parse_json(text, name);
  return parse_yaml(text, name);
}

std::vector<ConfigEntry> read_config_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MCORE_CHECK(f.good()) << "cannot read config file " << path
                        << " (given by --config): check the path";
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_config_text(ss.str(), path);
}

}  // namespace mcore::training
