// Sentence splitting for preprocess_data --split-sentences, a rule-based stand-in for the NLTK
// punkt splitter Megatron-LM uses (punkt's trained English model is not a package this project
// can install). A sentence ends after '.', '!' or '?' (and any closing quotes or brackets)
// followed by whitespace, except a '.' that ends
//   - a common English abbreviation ("Mr.", "Dr.", "e.g.", "etc.", "U.S.", month names, ...),
//   - a single letter (an initial: "J. R. R. Tolkien"), or
//   - a word followed by one that starts in lower case, as in "incl. taxes": sentences rarely
//     start in lower case, so this catches abbreviations missing from the list. punkt applies
//     that rule only after known abbreviations and initials, so "near. the" splits there.
// The whitespace between sentences is dropped, except newlines with keep_newlines.
#pragma once

#include <string>
#include <vector>

namespace mcore::datasets {

std::vector<std::string> split_sentences(const std::string& text, bool keep_newlines = false);

}  // namespace mcore::datasets
