#include "mcore/datasets/py_json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "mcore/base/error.h"

namespace mcore::datasets {

PyJson PyJson::boolean(bool b) {
  PyJson j;
  j.kind_ = Kind::kBool;
  j.bool_ = b;
  return j;
}
PyJson PyJson::integer(int64_t v) {
  PyJson j;
  j.kind_ = Kind::kInt;
  j.int_ = v;
  return j;
}
PyJson PyJson::real(double v) {
  PyJson j;
  j.kind_ = Kind::kFloat;
  j.float_ = v;
  return j;
}
PyJson PyJson::string(std::string s) {
  PyJson j;
  j.kind_ = Kind::kString;
  j.string_ = std::move(s);
  return j;
}
PyJson PyJson::list(std::vector<PyJson> items) {
  PyJson j;
  j.kind_ = Kind::kList;
  j.list_ = std::move(items);
  return j;
}
PyJson PyJson::object() {
  PyJson j;
  j.kind_ = Kind::kObject;
  return j;
}

PyJson& PyJson::set(const std::string& key, PyJson value) {
  MCORE_CHECK(kind_ == Kind::kObject) << "PyJson::set on a non-object";
  for (auto& kv : object_)
    if (kv.first == key) {
      kv.second = std::move(value);
      return *this;
    }
  object_.emplace_back(key, std::move(value));
  return *this;
}

PyJson& PyJson::push(PyJson value) {
  MCORE_CHECK(kind_ == Kind::kList) << "PyJson::push on a non-list";
  list_.push_back(std::move(value));
  return *this;
}

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form, e.g. "9.69e-01".
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci = sci.substr(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  const int exp10 = std::atoi(sci.c_str() + e + 1);
  const int decpt = exp10 + 1;  // value = 0.DIGITS * 10^decpt
  const int nd = static_cast<int>(digits.size());
  std::string out;
  if (decpt > -4 && decpt <= 16) {  // CPython's float_repr_style 'short' rule
    if (decpt <= 0) {
      out = "0." + std::string(-decpt, '0') + digits;
    } else if (decpt >= nd) {
      out = digits + std::string(decpt - nd, '0') + ".0";
    } else {
      out = digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
  } else {
    out = digits.substr(0, 1);
    if (nd > 1) out += "." + digits.substr(1);
    const int x = decpt - 1;
    char eb[16];
    std::snprintf(eb, sizeof(eb), "e%c%02d", x < 0 ? '-' : '+', std::abs(x));
    out += eb;
  }
  return sign + out;
}

namespace {

// json.dumps with ensure_ascii=True: UTF-8 input, non-ASCII as \uXXXX (surrogate pairs).
void dump_string(std::string& out, const std::string& s) {
  out += '"';
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    int len = 1;
    if (c < 0x80) {
      cp = c;
    } else if ((c >> 5) == 6 && i + 1 < s.size()) {
      cp = ((c & 0x1f) << 6) | (s[i + 1] & 0x3f);
      len = 2;
    } else if ((c >> 4) == 14 && i + 2 < s.size()) {
      cp = ((c & 0x0f) << 12) | ((s[i + 1] & 0x3f) << 6) | (s[i + 2] & 0x3f);
      len = 3;
    } else if ((c >> 3) == 30 && i + 3 < s.size()) {
      cp = ((c & 0x07) << 18) | ((s[i + 1] & 0x3f) << 12) | ((s[i + 2] & 0x3f) << 6) |
           (s[i + 3] & 0x3f);
      len = 4;
    } else {
      cp = 0xfffd;  // invalid UTF-8 byte: Python could not have produced it either
    }
    i += len;
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (cp >= 0x20 && cp < 0x7f) {
      out += static_cast<char>(cp);
    } else if (cp < 0x10000) {
      std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
      out += buf;
    } else {
      const uint32_t v = cp - 0x10000;
      std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
      out += buf;
    }
  }
  out += '"';
}

void newline(std::string& out, int indent, int level) {
  out += '\n';
  out.append(static_cast<size_t>(indent * level), ' ');
}

}  // namespace

void PyJson::dump_to(std::string& out, int indent, int level) const {
  switch (kind_) {
    case Kind::kNull:
      out += "null";
      return;
    case Kind::kBool:
      out += bool_ ? "true" : "false";
      return;
    case Kind::kInt:
      out += std::to_string(int_);
      return;
    case Kind::kFloat:
      out += python_float_repr(float_);
      return;
    case Kind::kString:
      dump_string(out, string_);
      return;
    case Kind::kList: {
      if (list_.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < list_.size(); ++i) {
        if (i) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(out, indent, level + 1);
        list_[i].dump_to(out, indent, level + 1);
      }
      if (indent >= 0) newline(out, indent, level);
      out += ']';
      return;
    }
    case Kind::kObject: {
      if (object_.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      for (size_t i = 0; i < object_.size(); ++i) {
        if (i) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(out, indent, level + 1);
        dump_string(out, object_[i].first);
        out += ": ";
        object_[i].second.dump_to(out, indent, level + 1);
      }
      if (indent >= 0) newline(out, indent, level);
      out += '}';
      return;
    }
  }
}

std::string PyJson::dumps(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

}  // namespace mcore::datasets
