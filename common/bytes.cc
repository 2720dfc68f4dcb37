#include "common/bytes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace berth {

std::string HexEncode(std::span<const uint8_t> data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (uint8_t b : data) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<Bytes> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return InvalidArgument("hex string has odd length");
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexValue(hex[2 * i]), lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return InvalidArgument("invalid hex character at offset " + std::to_string(2 * i));
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

namespace {
// Reads into `out` (string-like with resize/data); wipes partial data on error is the
// caller's concern for secrets.
Status ReadFd(int fd, const std::string& path, size_t max_size, std::string& out) {
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read(" + path + ")");
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_size) {
      WipeMemory(buf, sizeof buf);
      return InvalidArgument(path + " is larger than " + std::to_string(max_size) + " bytes");
    }
    out.append(buf, static_cast<size_t>(n));
  }
  WipeMemory(buf, sizeof buf);
  return OkStatus();
}
}  // namespace

Result<std::string> ReadFile(const std::string& path, size_t max_size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open(" + path + ")");
  std::string out;
  Status st = ReadFd(fd, path, max_size, out);
  close(fd);
  if (!st.ok()) return st;
  return out;
}

Result<SecretBytes> ReadSecretFile(const std::string& path, size_t max_size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return ErrnoStatus("open(" + path + ")");
  std::string raw;
  raw.reserve(max_size < 65536 ? max_size : 65536);  // avoid reallocation copies
  Status st = ReadFd(fd, path, max_size, raw);
  close(fd);
  if (!st.ok()) {
    WipeString(raw);
    return st;
  }
  return SecretBytes::TakeFrom(raw);
}

namespace {
std::string DirName(const std::string& path) {
  auto pos = path.rfind('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

Status FsyncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open(" + dir + ")");
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return ErrnoStatus("fsync(" + dir + ")", err);
  return OkStatus();
}
}  // namespace

Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data, mode_t mode) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus("open(" + tmp + ")");
  // The umask may have narrowed `mode`; never widened, but make it exact.
  if (fchmod(fd, mode) != 0) {
    Status st = ErrnoStatus("fchmod(" + tmp + ")");
    close(fd);
    unlink(tmp.c_str());
    return st;
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status st = ErrnoStatus("write(" + tmp + ")");
      close(fd);
      unlink(tmp.c_str());
      return st;
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) {
    Status st = ErrnoStatus("fsync(" + tmp + ")");
    close(fd);
    unlink(tmp.c_str());
    return st;
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = ErrnoStatus("rename(" + tmp + ", " + path + ")");
    unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(DirName(path));
}

namespace {
Status OverwriteWithZeros(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open(" + path + ")");
  struct stat st;
  Status result = OkStatus();
  if (fstat(fd, &st) != 0) {
    result = ErrnoStatus("fstat(" + path + ")");
  } else {
    static const uint8_t kZeros[4096] = {};
    off_t off = 0;
    while (off < st.st_size) {
      size_t n = static_cast<size_t>(std::min<off_t>(st.st_size - off, sizeof kZeros));
      ssize_t w = pwrite(fd, kZeros, n, off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        result = ErrnoStatus("overwriting " + path);
        break;
      }
      off += w;
    }
  }
  close(fd);
  return result;
}
}  // namespace

Status WipeAndRemove(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    return errno == ENOENT ? OkStatus() : ErrnoStatus("lstat(" + path + ")");
  }
  Status result = OkStatus();
  auto keep_first = [&](Status s) {
    if (result.ok() && !s.ok()) result = std::move(s);
  };
  if (S_ISREG(st.st_mode)) {
    keep_first(OverwriteWithZeros(path));
  } else if (S_ISDIR(st.st_mode)) {
    std::error_code ec;
    // Does not follow symlinks to directories.
    for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec) && !it->is_symlink(ec)) {
        keep_first(OverwriteWithZeros(it->path().string()));
      }
    }
    if (ec) keep_first(Internal("listing " + path + ": " + ec.message()));
  }
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) keep_first(Internal("removing " + path + ": " + ec.message()));
  return result;
}

Status MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) return OkStatus();
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoStatus("mkdir(" + cur + ")");
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus("stat(" + path + ")");
  if (!S_ISDIR(st.st_mode)) return FailedPrecondition(path + " exists and is not a directory");
  return OkStatus();
}

std::string JoinRoot(const std::string& root, const std::string& path) {
  if (root.empty() || root == "/") return path;
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  if (!path.empty() && path.front() == '/') return r + path;
  return r + "/" + path;
}

std::string TrimWhitespace(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace berth
