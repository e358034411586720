// Reads the settings of a `--config FILE` for the argument parser: JSON (an object), or the
// YAML subset launch configs use - `key: value` lines, `# comments`, quoted strings, flow lists
// `[a, b]`, block lists (`key:` followed by `- item` lines), `null`/`~`. Values come back as
// text (the parser converts them by the flag's type), in file order. Errors name the file and
// line.
#pragma once

#include <string>
#include <vector>

namespace mcore::training {

struct ConfigEntry {
  std::string key;
  std::vector<std::string> values;  // one for a scalar; the items of a list
  bool is_list = false;
  bool is_null = false;
  std::string where;  // "file:line" for error messages
};

std::vector<ConfigEntry> read_config_file(const std::string& path);
// The same from text (`name` is used in messages); format by content: '{' starts JSON.
std::vector<ConfigEntry> parse_config_text(const std::string& text, const std::string& name);

}  // namespace mcore::training
