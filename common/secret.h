// SecretBytes: a fixed-size buffer for key material that wipes itself when destroyed.
//
// Move-only; copies must be explicit (Clone). There is deliberately no operator<<, no
// formatter and no conversion to std::string, so a secret cannot end up in a log line or an
// error message by accident. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace berth {

// Overwrites memory in a way the compiler cannot elide (OPENSSL_cleanse).
void WipeMemory(void* data, size_t size);
// Wipes the characters of a std::string (including the ones beyond size up to capacity is
// not possible portably; callers keep secrets out of strings that grow).
void WipeString(std::string& s);

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);
  SecretBytes(const void* data, size_t size);
  // Copies from `s` and then wipes `s` (for secrets arriving in protobuf string fields).
  static SecretBytes TakeFrom(std::string& s);
  ~SecretBytes();

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  SecretBytes Clone() const { return SecretBytes(data(), size()); }

  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<const uint8_t> span() const { return {data(), size()}; }
  // A view for APIs that take characters (PEM text, tokens). Do not copy it into a string
  // that outlives this object without wiping it.
  std::string_view view() const { return {reinterpret_cast<const char*>(data()), size()}; }

  // Constant-time comparison.
  bool Equals(const SecretBytes& other) const;

 private:
  void Reset();
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

}  // namespace berth
