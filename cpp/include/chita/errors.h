// User errors throw (-> Python ValueError); broken invariants are our bugs (-> RuntimeError).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace chita {

// Bad input from the caller: the message must say how to fix it.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A feature that was not compiled in (e.g. CUDA in a CPU-only build).
class NotCompiled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// "dir/sub/file.cpp" -> "file.cpp": messages name the file, never the build machine's paths.
constexpr const char* file_name(const char* path) {
  const char* name = path;
  for (const char* c = path; *c != '\0'; ++c)
    if (*c == '/' || *c == '\\') name = c + 1;
  return name;
}
}  // namespace detail

}  // namespace chita

#define CHITA_THROW_IF_NOT(cond, ...)                                       \
  do {                                                                      \
    if (!(cond)) throw ::chita::InvalidArgument(::chita::detail::concat(__VA_ARGS__)); \
  } while (0)

// A broken invariant (our bug, never the caller's input): RuntimeError naming the condition
// and file:line (file name only), so that a report can point at it.
#define CHITA_ASSERT(cond)                                                                 \
  do {                                                                                     \
    if (!(cond))                                                                           \
      throw std::logic_error(::chita::detail::concat(                                      \
          "chita internal error (please report it): ", #cond, " at ",                      \
          ::chita::detail::file_name(__FILE__), ":", __LINE__));                            \
  } while (0)
