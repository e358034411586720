#include "mcore/training/arguments.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <variant>

#include "mcore/base/error.h"
#include "mcore/training/argument_table.h"
#include "mcore/training/config_file.h"
#include "mcore/training/validate_args.h"

namespace mcore::training {

namespace {

using detail::Row;
using detail::rows;
using Act = ArgumentSpec::Action;
using A = Arguments;

const Row* find_flag(const std::string& flag) {
  for (const Row& r : rows())
    for (const auto& f : r.spec.flags)
      if (f == flag) return &r;
  return nullptr;
}

const Row* find_dest(const std::string& dest) {
  for (const Row& r : rows())
    if (r.spec.dest == dest) return &r;
  return nullptr;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_flag(const std::string& flag) {
  std::string best;
  size_t best_d = static_cast<size_t>(-1);
  for (const Row& r : rows())
    for (const auto& f : r.spec.flags) {
      const size_t d = edit_distance(flag, f);
      if (d < best_d) best_d = d, best = f;
    }
  for (const char* f : {"--config", "--help"}) {
    const size_t d = edit_distance(flag, f);
    if (d < best_d) best_d = d, best = f;
  }
  return best;
}

[[noreturn]] void unknown(const std::string& what, const std::string& name) {
  const std::string flag = name.rfind("--", 0) == 0 ? name : "--" + name;
  MCORE_FAIL() << "unrecognized " << what << " " << name << "; did you mean " << closest_flag(flag)
               << "? ("
               << "see --help for the list)";
  std::abort();  // unreachable: MCORE_FAIL throws
}

int64_t to_int(const std::string& s, const std::string& flag) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  MCORE_CHECK(!s.empty() && end && *end == '\0' && errno == 0)
      << "argument " << flag << ": invalid int value: '" << s << "'";
  return v;
}

double to_double(const std::string& s, const std::string& flag) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  MCORE_CHECK(!s.empty() && end && *end == '\0')
      << "argument " << flag << ": invalid float value: '" << s << "'";
  return v;
}

bool to_bool(const std::string& s, const std::string& where) {
  std::string l = s;
  std::transform(l.begin(), l.end(), l.begin(), ::tolower);
  if (l == "true" || l == "yes" || l == "on" || l == "1") return true;
  if (l == "false" || l == "no" || l == "off" || l == "0") return false;
  MCORE_FAIL() << where << ": expected true or false, got '" << s << "'";
  return false;  // unreachable
}

// Stores `values` into the row's field (already checked for count).
void assign(Arguments& a, const Row& row, const std::vector<std::string>& values,
            const std::string& flag) {
  for (const auto& v : values) {
    if (row.spec.choices.empty()) continue;
    if (std::find(row.spec.choices.begin(), row.spec.choices.end(), v) != row.spec.choices.end())
      continue;
    std::string c;
    for (const auto& x : row.spec.choices) c += (c.empty() ? "'" : ", '") + x + "'";
    MCORE_FAIL() << "argument " << flag << ": invalid choice: '" << v << "' (choose from " << c
                 << ")";
  }
  std::visit(
      [&](auto member) {
        using M = std::remove_reference_t<decltype(a.*member)>;
        if constexpr (std::is_same_v<M, bool>) {
          a.*member = to_bool(values.at(0), "argument " + flag);
        } else if constexpr (std::is_same_v<M, int64_t> ||
                             std::is_same_v<M, std::optional<int64_t>>) {
          a.*member = to_int(values.at(0), flag);
        } else if constexpr (std::is_same_v<M, double> ||
                             std::is_same_v<M, std::optional<double>>) {
          a.*member = to_double(values.at(0), flag);
        } else if constexpr (std::is_same_v<M, std::string> ||
                             std::is_same_v<M, std::optional<std::string>>) {
          a.*member = values.at(0);
        } else if constexpr (std::is_same_v<M, std::optional<std::vector<std::string>>>) {
          a.*member = values;
        } else {
          std::vector<int64_t> v;
          for (const auto& s : values) v.push_back(to_int(s, flag));
          a.*member = v;
        }
      },
      row.field);
  a.explicitly_set.insert(row.spec.dest);
}

void check_count(const Row& row, size_t n, const std::string& flag) {
  if (row.nargs == -1) return;
  MCORE_CHECK(n == static_cast<size_t>(row.nargs))
      << "argument " << flag << ": expected " << row.nargs << " value"
      << (row.nargs == 1 ? "" : "s") << ", got " << n;
}

std::string normalize_key(std::string k) {
  std::replace(k.begin(), k.end(), '_', '-');
  if (k.rfind("--", 0) != 0) k = "--" + k;
  return k;
}

void apply_config(Arguments& a, const std::vector<ConfigEntry>& entries) {
  for (const auto& e : entries) {
    const std::string flag = normalize_key(e.key);
    const Row* row = find_flag(flag);
    // A destination name (add_bias_linear: false) sets the field directly.
    const Row* by_dest = row ? nullptr : find_dest(e.key);
    if (!by_dest)
      by_dest = row ? nullptr : find_dest([&] {
        std::string d = e.key;
        std::replace(d.begin(), d.end(), '-', '_');
        return d;
      }());
    if (!row && !by_dest) {
      if (flag == "--config") MCORE_FAIL() << e.where << ": a config file cannot include another";
      unknown("config key", e.key + " (" + e.where + ")");
    }
    const Row& r = row ? *row : *by_dest;
    const std::string where = e.where + " (" + e.key + ")";
    if (e.is_null) {
      std::visit(
          [&](auto member) {
            using M = std::remove_reference_t<decltype(a.*member)>;
            if constexpr (requires(M m) { m.reset(); }) {
              (a.*member).reset();
            } else {
              MCORE_FAIL() << where << ": " << r.spec.dest << " cannot be null";
            }
          },
          r.field);
      a.explicitly_set.insert(r.spec.dest);
      continue;
    }
    if (row && r.spec.action != Act::kStore) {
      // A flag key: `sequence-parallel: true` applies the flag, `false` leaves the default.
      MCORE_CHECK(e.values.size() == 1 && !e.is_list) << where << ": expected true or false";
      if (to_bool(e.values[0], where)) {
        a.*std::get<bool A::*>(r.field) = r.spec.action == Act::kStoreTrue;
        a.explicitly_set.insert(r.spec.dest);
      }
      continue;
    }
    check_count(r, e.values.size(), where);
    assign(a, r, e.values, where);
  }
}

}  // namespace

const std::vector<ArgumentSpec>& argument_table() {
  static const std::vector<ArgumentSpec> t = [] {
    std::vector<ArgumentSpec> v;
    for (const Row& r : rows()) v.push_back(r.spec);
    return v;
  }();
  return t;
}

Arguments parse_args(const std::vector<std::string>& argv) {
  // Pass 1: split into (flag, values) and find --config.
  struct Given {
    const Row* row;
    std::string flag;
    std::vector<std::string> values;
  };
  std::vector<Given> given;
  std::optional<std::string> config;
  bool help = false;
  for (size_t i = 1; i < argv.size(); ++i) {
    std::string tok = argv[i];
    MCORE_CHECK(tok.rfind("--", 0) == 0 || tok == "-h")
        << "unexpected positional argument '" << tok << "' (flags start with --)";
    if (tok == "-h" || tok == "--help") {
      help = true;
      continue;
    }
    std::optional<std::string> inline_value;
    if (const size_t eq = tok.find('='); eq != std::string::npos) {
      inline_value = tok.substr(eq + 1);
      tok = tok.substr(0, eq);
    }
    auto take_values = [&](int max) {
      std::vector<std::string> vals;
      if (inline_value) return std::vector<std::string>{*inline_value};
      while (i + 1 < argv.size() && (max < 0 || static_cast<int>(vals.size()) < max) &&
             (argv[i + 1].rfind("--", 0) != 0)) {
        vals.push_back(argv[++i]);
      }
      return vals;
    };
    if (tok == "--config") {
      auto vals = take_values(1);
      MCORE_CHECK(vals.size() == 1) << "argument --config: expected a file name";
      config = vals[0];
      continue;
    }
    const Row* row = find_flag(tok);
    if (!row) unknown("argument", tok);
    if (row->spec.action != Act::kStore) {
      MCORE_CHECK(!inline_value) << "argument " << tok << ": ignored explicit argument '"
                                 << *inline_value << "' (it is a switch and takes no value)";
      given.push_back({row, tok, {}});
      continue;
    }
    auto vals = take_values(row->nargs);
    check_count(*row, vals.size(), tok);
    given.push_back({row, tok, vals});
  }

  Arguments a;
  a.help = help;
  if (config) {
    apply_config(a, read_config_file(*config));
    a.config = config;
  }
  // The command line wins over the file.
  for (const auto& g : given) {
    if (g.row->spec.action == Act::kStore) {
      assign(a, *g.row, g.values, g.flag);
    } else {
      a.*std::get<bool A::*>(g.row->field) = g.row->spec.action == Act::kStoreTrue;
      a.explicitly_set.insert(g.row->spec.dest);
    }
  }
  if (a.model) apply_model_preset(a);
  return a;
}

Arguments parse_args(int argc, char** argv) {
  return parse_args(std::vector<std::string>(argv, argv + argc));
}

// ---- printing (Python's str() of each value, as Megatron's _print_args) ----

namespace {

std::string py_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
  char buf[64];
  int p = 1;
  for (; p <= 17; ++p) {  // shortest round-trip digits, as repr()
    std::snprintf(buf, sizeof(buf), "%.*e", p - 1, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  const int e = static_cast<int>(std::floor(std::log10(std::fabs(x))));
  if (e < -4 || e >= 16) {
    std::snprintf(buf, sizeof(buf), "%.*e", p - 1, x);  // 1e-08 style, as Python
    std::string s = buf;
    const size_t epos = s.find('e');
    std::string mant = s.substr(0, epos), ex = s.substr(epos + 1);
    const char sign = ex[0];
    ex = ex.substr(1);
    while (ex.size() > 2 && ex[0] == '0') ex.erase(0, 1);
    return mant + "e" + sign + ex;
  }
  std::snprintf(buf, sizeof(buf), "%.*f", std::max(p - 1 - e, 1), x);
  return buf;
}

template <class T>
std::string py_str(const T& v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v ? "True" : "False";
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return std::to_string(v);
  } else if constexpr (std::is_same_v<T, double>) {
    return py_float(v);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return v;
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", '" : "'") + v[i] + "'";
    return s + "]";
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  } else {  // optional
    return v ? py_str(*v) : "None";
  }
}

}  // namespace

std::string format_args(const Arguments& a, const std::string& title) {
  std::vector<std::pair<std::string, std::string>> items;
  std::set<std::string> seen;  // flags that share a dest (--x / --no-x) print it once
  for (const Row& r : rows()) {
    if (!seen.insert(r.spec.dest).second) continue;
    std::visit([&](auto member) { items.emplace_back(r.spec.dest, py_str(a.*member)); }, r.field);
  }
  items.emplace_back("world_size", py_str(a.world_size));
  items.emplace_back("rank", py_str(a.rank));
  items.emplace_back("data_parallel_size", py_str(a.data_parallel_size));
  items.emplace_back("virtual_pipeline_model_parallel_size",
                     py_str(a.virtual_pipeline_model_parallel_size));
  items.emplace_back("params_dtype", "torch." + a.params_dtype);
  items.emplace_back("padded_vocab_size", py_str(a.padded_vocab_size));
  items.emplace_back("consumed_train_samples", py_str(a.consumed_train_samples));
  items.emplace_back("consumed_valid_samples", py_str(a.consumed_valid_samples));
  items.emplace_back("config", py_str(a.config));
  std::vector<std::string> lines;
  for (const auto& [name, value] : items) {
    const int dots = std::max(0, 48 - static_cast<int>(name.size()));
    lines.push_back("  " + name + " " + std::string(dots, '.') + " " + value);
  }
  auto lower = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), ::tolower);
    return s;
  };
  std::stable_sort(lines.begin(), lines.end(),
                   [&](const std::string& x, const std::string& y) { return lower(x) < lower(y); });
  std::string out = "------------------------ " + title + " ------------------------\n";
  for (const auto& l : lines) out += l + "\n";
  out += "-------------------- end of " + title + " ---------------------\n";
  return out;
}

void print_args(const Arguments& args) {
  if (args.rank != 0) return;
  std::cout << format_args(args) << std::flush;
}

std::string help_text(const std::string& program) {
  std::ostringstream os;
  os << "usage: " << program << " [--config FILE] [flags]\n\n"
     << "Megatron-LM flags (defaults as Megatron's). --config FILE reads the same flags from a\n"
     << "JSON or YAML file (keys with dashes or underscores); the command line wins.\n\n";
  const Arguments d;
  for (const Row& r : rows()) {
    std::string names;
    for (const auto& f : r.spec.flags) names += (names.empty() ? "" : ", ") + f;
    if (r.spec.action == Act::kStore) {
      names += r.nargs == -1 ? " [VALUE ...]" : r.nargs == 3 ? " A B C" : " VALUE";
    }
    std::string def;
    std::visit([&](auto member) { def = py_str(d.*member); }, r.field);
    os << "  " << names << "\n      " << r.spec.help;
    if (!r.spec.choices.empty()) {
      os << " Choices:";
      for (const auto& c : r.spec.choices) os << " " << c;
      os << ".";
    }
    if (r.spec.action == Act::kStore) os << " (default: " << def << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace mcore::training
