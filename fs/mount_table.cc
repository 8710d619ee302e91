#include "fs/mount_table.h"

#include <fstream>

namespace envelope::fs {

namespace {

// /proc/self/mounts writes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '3') {
      out.push_back(static_cast<char>(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) |
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

}  // namespace

std::string MountPointOf(const std::string& cipherdir) {
  std::ifstream in("/proc/self/mounts");
  const std::string want = "envelopefs:" + cipherdir;
  std::string source, target, rest;
  while (in >> source >> target && std::getline(in, rest)) {
    if (UnescapeMountField(source) == want) return UnescapeMountField(target);
  }
  return "";
}

bool IsMounted(const std::string& cipherdir) { return !MountPointOf(cipherdir).empty(); }

}  // namespace envelope::fs
