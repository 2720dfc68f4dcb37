// Byte strings, hex, and files: reading, and durable writes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/secret.h"
#include "common/status.h"

namespace berth {

using Bytes = std::vector<uint8_t>;

inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string ToString(std::span<const uint8_t> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}
inline Bytes ToBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

std::string HexEncode(std::span<const uint8_t> data);  // lowercase
// Accepts upper or lower case; whitespace is not allowed. Odd length or a non-hex
// character is kInvalidArgument.
Result<Bytes> HexDecode(std::string_view hex);

// Reads a whole file, refusing files larger than `max_size` (kInvalidArgument).
Result<std::string> ReadFile(const std::string& path, size_t max_size = 64 << 20);
Result<SecretBytes> ReadSecretFile(const std::string& path, size_t max_size = 1 << 20);

// Durable write: temp file in the same directory (O_NOFOLLOW|O_CLOEXEC, `mode`), write,
// fsync, rename over `path`, fsync the directory. A crash leaves either the old or the new
// file, never a torn one.
Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data, mode_t mode);
inline Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode) {
  return WriteFileAtomic(path, AsBytes(data), mode);
}

// Removes what held a secret (a key, a token) in a memory file system (/run): a file, or a
// directory and everything in it. Each regular file's bytes are overwritten with zeros before
// it is unlinked, so its pages go back to the kernel without the secret and another link to
// it reads zeros; symlinks are removed, never followed. Not for disks, whose file systems may
// keep old blocks (journals, copy-on-write, flash). A missing path is not an error; a file
// that cannot be overwritten is still removed, and the first error is returned.
Status WipeAndRemove(const std::string& path);

// mkdir -p with `mode` for the directories it creates.
Status MakeDirs(const std::string& path, mode_t mode = 0755);

// Joins an injectable root and an absolute path: JoinRoot("/tmp/r", "/etc/x") = "/tmp/r/etc/x".
std::string JoinRoot(const std::string& root, const std::string& path);

std::string TrimWhitespace(std::string_view s);

}  // namespace berth
