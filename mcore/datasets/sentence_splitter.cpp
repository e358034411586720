#include "mcore/datasets/sentence_splitter.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

namespace mcore::datasets {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// Lower-cased, with the periods inside kept ("u.s", "e.g").
const std::set<std::string>& abbreviations() {
  static const std::set<std::string> kAbbreviations = {
      "mr",  "mrs",  "ms",  "dr",  "prof", "sr",   "jr",     "st",   "vs",  "etc", "inc",  "ltd",
      "co",  "corp", "no",  "nos", "fig",  "figs", "cf",     "al",   "mt",  "gen", "gov",  "sen",
      "rep", "col",  "lt",  "sgt", "capt", "rev",  "approx", "dept", "est", "vol", "vols", "ed",
      "eds", "p",    "pp",  "ch",  "e.g",  "i.e",  "u.s",    "u.k",  "a.m", "p.m", "ph.d", "jan",
      "feb", "mar",  "apr", "jun", "jul",  "aug",  "sep",    "sept", "oct", "nov", "dec"};
  return kAbbreviations;
}

// Whether the '.' at text[dot] ends a sentence; `next` is the first character after the
// whitespace that follows it (or the end of the text).
bool period_ends_sentence(const std::string& text, size_t dot, size_t next) {
  size_t b = dot;
  while (b > 0 && (std::isalpha(static_cast<unsigned char>(text[b - 1])) || text[b - 1] == '.'))
    --b;
  std::string word = text.substr(b, dot - b);
  std::transform(word.begin(), word.end(), word.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (word.size() == 1 && std::isalpha(static_cast<unsigned char>(word[0]))) return false;
  if (abbreviations().count(word)) return false;
  if (next < text.size() && std::islower(static_cast<unsigned char>(text[next]))) return false;
  return true;
}

}  // namespace

std::vector<std::string> split_sentences(const std::string& text, bool keep_newlines) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size() && is_space(text[start])) ++start;
  for (size_t i = start; i < text.size(); ++i) {
    if (text[i] != '.' && text[i] != '!' && text[i] != '?') continue;
    size_t end = i + 1;
    while (end < text.size() && text[end] && std::strchr("\"')]", text[end])) ++end;
    if (end < text.size() && !is_space(text[end])) continue;
    size_t next = end;
    while (next < text.size() && is_space(text[next])) ++next;
    if (text[i] == '.' && end == i + 1 && !period_ends_sentence(text, i, next)) continue;
    std::string s = text.substr(start, end - start);
    if (keep_newlines)
      for (size_t j = end; j < next; ++j)
        if (text[j] == '\n') s += '\n';
    out.push_back(std::move(s));
    start = next;
    i = next - 1;
  }
  if (start < text.size()) {
    size_t end = text.size();
    while (end > start && is_space(text[end - 1])) --end;
    if (end > start) out.push_back(text.substr(start, end - start));
  }
  return out;
}

}  // namespace mcore::datasets
