// A small JSON value that serializes byte for byte like Python's `json.dumps(obj, indent=4)`.
// Megatron identifies a dataset by the MD5 of such a dump (its "unique description") and names
// its index caches after that hash; producing the identical text lets mcore reuse caches that
// Megatron-LM built and vice versa. Key order is insertion order (Python's OrderedDict), floats
// print like Python's repr (shortest round trip, "1.0", "1e-05"), non-ASCII is \u-escaped.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mcore::datasets {

class PyJson {
 public:
  enum class Kind { kNull, kBool, kInt, kFloat, kString, kList, kObject };

  PyJson() = default;  // null
  static PyJson null() { return PyJson(); }
  static PyJson boolean(bool b);
  static PyJson integer(int64_t v);
  static PyJson real(double v);
  static PyJson string(std::string s);
  static PyJson list(std::vector<PyJson> items = {});
  static PyJson object();

  // Object: append (or replace) a key, keeping first-insertion order. Returns *this.
  PyJson& set(const std::string& key, PyJson value);
  // List: append.
  PyJson& push(PyJson value);

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  const std::vector<std::pair<std::string, PyJson>>& items() const { return object_; }

  // json.dumps(self, indent=indent); indent < 0 means the compact one-line form of
  // json.dumps(self) (separators ", " and ": ").
  std::string dumps(int indent = 4) const;

 private:
  void dump_to(std::string& out, int indent, int level) const;

  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  int64_t int_ = 0;
  double float_ = 0.0;
  std::string string_;
  std::vector<PyJson> list_;
  std::vector<std::pair<std::string, PyJson>> object_;
};

// Python's repr(float): "0.969", "1.0", "1e-05", "1e+16", "inf" -> JSON "Infinity".
std::string python_float_repr(double v);

}  // namespace mcore::datasets
