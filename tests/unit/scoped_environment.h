// For tests of code that reads the environment: the named variables are
// unset for the test's lifetime and restored afterwards, and HOME is a
// fresh temporary directory, removed afterwards.
#ifndef ENVELOPE_TESTS_UNIT_SCOPED_ENVIRONMENT_H_
#define ENVELOPE_TESTS_UNIT_SCOPED_ENVIRONMENT_H_

#include <stdlib.h>

#include <filesystem>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

namespace envelope::testing {

class ScopedEnvironment {
 public:
  // `variables` should include HOME.
  explicit ScopedEnvironment(std::initializer_list<const char*> variables)
      : variables_(variables) {
    for (const char* name : variables_) {
      if (const char* v = std::getenv(name)) saved_[name] = v;
      ::unsetenv(name);
    }
    char tmpl[] = "/tmp/envelope-env-test-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) home_ = tmpl;
    ::setenv("HOME", home_.c_str(), 1);
  }
  ~ScopedEnvironment() {
    if (!home_.empty()) std::filesystem::remove_all(home_);
    for (const char* name : variables_) {
      auto it = saved_.find(name);
      if (it == saved_.end()) {
        ::unsetenv(name);
      } else {
        ::setenv(name, it->second.c_str(), 1);
      }
    }
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

  // The temporary HOME; empty if it could not be made.
  const std::string& home() const { return home_; }

 private:
  const std::vector<const char*> variables_;
  std::map<std::string, std::string> saved_;
  std::string home_;
};

}  // namespace envelope::testing

#endif  // ENVELOPE_TESTS_UNIT_SCOPED_ENVIRONMENT_H_
