// errors.h: internal errors name the file without its directories.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "chita/errors.h"

namespace chita {
namespace {

TEST(Errors, FileNameDropsDirectories) {
  EXPECT_STREQ(detail::file_name("/a/b/dense_linalg.cpp"), "dense_linalg.cpp");
  EXPECT_STREQ(detail::file_name("C:\\src\\x.cu"), "x.cu");
  EXPECT_STREQ(detail::file_name("plain.cpp"), "plain.cpp");
}

TEST(Errors, AssertNamesConditionAndFileButNoPath) {
  try {
    CHITA_ASSERT(1 + 1 == 3);
    FAIL() << "expected logic_error";
  } catch (const std::logic_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("chita internal error"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1 + 1 == 3 at test_errors.cpp:"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('/'), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace chita
