// preprocess_data's sentence splitter (mcore/datasets/sentence_splitter.h), a rule-based stand-in
// for NLTK's punkt. The expected splits follow its documented rules: abbreviations, initials and
// lower-case continuations do not end a sentence. punkt itself cannot be the reference here: its
// English model downloads from NLTK's data server, which is outside the package registries. For
// the first four cases punkt agrees; it would split "near. the" (its lower-case rule applies only
// after abbreviations and initials).
#include <gtest/gtest.h>

#include "mcore/datasets/sentence_splitter.h"

namespace mcore::datasets {
namespace {

using V = std::vector<std::string>;

TEST(SentenceSplitter, EndsAtTerminalPunctuationBeforeWhitespace) {
  EXPECT_EQ(split_sentences("One here. Two there!  Three?\nFour"),
            (V{"One here.", "Two there!", "Three?", "Four"}));
  EXPECT_EQ(split_sentences("He said \"Stop.\" Then he left."),
            (V{"He said \"Stop.\"", "Then he left."}));
  EXPECT_EQ(split_sentences("Version 3.14 is out. Get it."),
            (V{"Version 3.14 is out.", "Get it."}));
  EXPECT_EQ(split_sentences("  "), V{});
}

TEST(SentenceSplitter, AbbreviationsInitialsAndLowerCaseContinuationsDoNotEnd) {
  EXPECT_EQ(split_sentences("Mr. Smith met Dr. Jones at 5 p.m. on Jan. 3. They talked."),
            (V{"Mr. Smith met Dr. Jones at 5 p.m. on Jan. 3.", "They talked."}));
  EXPECT_EQ(split_sentences("J. R. R. Tolkien wrote it. It sold well."),
            (V{"J. R. R. Tolkien wrote it.", "It sold well."}));
  EXPECT_EQ(split_sentences("Fruit, e.g. apples, etc. are sold in the U.S. and elsewhere."),
            (V{"Fruit, e.g. apples, etc. are sold in the U.S. and elsewhere."}));
  EXPECT_EQ(split_sentences("It weighs approx. three tons. Lift it."),
            (V{"It weighs approx. three tons.", "Lift it."}));
  EXPECT_EQ(split_sentences("The end of the text is near. the lower-case start joins."),
            (V{"The end of the text is near. the lower-case start joins."}));
}

TEST(SentenceSplitter, KeepNewlinesKeepsTheNewlinesBetweenSentences) {
  EXPECT_EQ(split_sentences("First.\n\nSecond.", true), (V{"First.\n\n", "Second."}));
  EXPECT_EQ(split_sentences("First.\n\nSecond.", false), (V{"First.", "Second."}));
}

}  // namespace
}  // namespace mcore::datasets
